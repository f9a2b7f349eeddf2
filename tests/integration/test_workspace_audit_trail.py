"""A subject's audit trail in the workspace, over a real PostgreSQL: every event of the
subject in log order with who recorded it, and an export identical to what
``vigil audit export`` writes for that subject."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg
import pytest

from services.notifier.domain.site_time import local_time
from shared.events import wrap
from shared.events.reviews import DataQualityIssueReviewed
from tests.integration.test_audit_cli import vigil
from tests.support.notifier import STUDY, T0, ManualClock, context, plan, roster
from tests.support.signatures import (
    client,
    data_quality_issue,
    signal_on_result,
    store,
    workspace_app,
)

pytestmark = pytest.mark.integration


async def test_the_trail_lists_every_event_of_the_subject_in_order_with_who_recorded_it(
    pool: asyncpg.Pool,
) -> None:
    ctx = context(roster(), ManualClock())
    facts, elsewhere = signal_on_result("S1", grade=3), signal_on_result("S1")
    issue = data_quality_issue(facts.subject_id, facts.result)
    review = DataQualityIssueReviewed(
        study_id=STUDY,
        subject_id=facts.subject_id,
        issue_id=issue.id,
        person_id="pi1",
        role="investigator",
        reviewed_at=T0,
        note="Patient Jane Roe called",  # free text: never on the trail page
    )
    await store(pool, *facts.envelopes, *elsewhere.envelopes, issue)
    await plan(pool, ctx, facts.signal)
    await store(pool, wrap(review, source="/vigil/notifier"))
    app, _ = workspace_app(pool, ctx, "pi1")
    async with client(app) as http:
        await http.post(
            f"/workspace/signals/{facts.signal_id}/assess",
            data={
                "csrf": "test-csrf",
                "meaning": "clinically-significant",
                "comment": "Spoke to Jane Roe",
                "password": "correct horse battery staple",
            },
        )
        page = await http.get(f"/workspace/studies/{STUDY}/subjects/{facts.subject_id}/audit")
    assert page.status_code == 200
    expected = await pool.fetch(
        "SELECT position, type, recorded_at FROM events WHERE subject_id = $1 ORDER BY position",
        facts.subject_id,
    )
    shown = [int(p) for p in re.findall(r'<th scope="row">(\d+)</th>', page.text)]
    assert shown == [row["position"] for row in expected]
    types = {row["type"].split(".")[-2] for row in expected}
    assert {"enrolled", "reported", "raised", "opened", "assessment_signed"} <= types
    assert {"issue_raised", "issue_reviewed"} <= types
    text = re.sub(r"\s+", " ", page.text)
    assert "Assessment signed" in text
    assert "/vigil/notifier: pi1 (investigator)" in text  # a person's own event
    assert "/vigil/ingest" in text
    assert local_time(expected[0]["recorded_at"]) in text  # the recorded time, the zone named
    assert "Jane Roe" not in text  # comments and notes stay out of the page
    assert elsewhere.subject_id not in text


async def test_the_export_is_what_vigil_audit_export_writes_for_the_subject(
    pool: asyncpg.Pool, fresh_dsn: str, tmp_path: Path
) -> None:
    ctx = context(roster(), ManualClock())
    facts, elsewhere = signal_on_result("S1"), signal_on_result("S1")
    await store(pool, *facts.envelopes, *elsewhere.envelopes)
    await plan(pool, ctx, facts.signal)
    app, _ = workspace_app(pool, ctx, "mm")  # the medical monitor: the whole study
    base = f"/workspace/studies/{STUDY}/subjects/{facts.subject_id}/audit/export"
    async with client(app) as http:
        jsonl = await http.get(base)
        csv = await http.get(base, params={"format": "csv"})
        unknown = await http.get(base, params={"format": "xml"})
    for fmt, answer in (("jsonl", jsonl), ("csv", csv)):
        out = tmp_path / f"export.{fmt}"
        done = await vigil(
            "audit", "export", "--study", STUDY, "--subject", facts.subject_id,
            "--format", fmt, "--output", str(out), dsn=fresh_dsn, anchors=tmp_path / "a.jsonl",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert answer.status_code == 200
        assert answer.content == out.read_bytes()
        assert "attachment" in answer.headers["content-disposition"]
    assert len(jsonl.text.splitlines()) == 4  # enrolment, result, signal, notification
    assert unknown.status_code == 422
    assert "format: choose jsonl or csv" in unknown.text


async def test_a_subject_out_of_scope_or_unknown_is_not_found(pool: asyncpg.Pool) -> None:
    ctx = context(roster(), ManualClock())
    facts = signal_on_result("S1")
    await store(pool, *facts.envelopes)
    other_site, _ = workspace_app(pool, ctx, "pi2")
    own_site, _ = workspace_app(pool, ctx, "pi1")
    trail = f"/workspace/studies/{STUDY}/subjects/{facts.subject_id}/audit"
    async with client(other_site) as http:
        theirs = await http.get(trail)
        export = await http.get(f"{trail}/export")
        # the same person asking for a subject that does not exist reads the same page
        unknown = await http.get(f"/workspace/studies/{STUDY}/subjects/NOBODY-1/audit")
    async with client(own_site) as http:
        bad = await http.get(f"/workspace/studies/{STUDY}/subjects/{'x' * 65}/audit")
        mine = await http.get(trail)
    assert (theirs.status_code, export.status_code) == (404, 404)
    assert (unknown.status_code, bad.status_code) == (404, 404)
    assert theirs.text == unknown.text
    assert facts.subject_id not in theirs.text
    assert mine.status_code == 200
