"""The data-quality queue in the workspace, over a real PostgreSQL: issues with their
source receipts, scoped per person, filtered, and marked reviewed as audit events."""

from __future__ import annotations

import re
import uuid

import asyncpg
import pytest

from services.notifier.adapters import workspace_records
from services.notifier.domain.roster import Roster
from shared.db.receipts import ReceiptRow, insert_receipt
from shared.events import DataQualityIssueRaised, Envelope, wrap
from shared.events.reviews import DataQualityIssueReviewed
from shared.eventstore.postgres import read_latest_of_type_sql, read_matching_sql
from tests.support.notifier import DATA_MANAGER, STUDY, T0, ManualClock, context, roster
from tests.support.signatures import (
    client,
    data_quality_issue,
    haemoglobin,
    signal_on_result,
    store,
    workspace_app,
)

pytestmark = pytest.mark.integration

RAW = b"MSH|^~\\&|LIS|...\rPID|||S1-0001||Roe^Jane\rOBX|1|NM|718-7||8.0|g/dl%\r"


def with_data_manager() -> Roster:
    base = roster()
    contacts = [p.model_dump(mode="json") for p in base.study_contacts]
    return Roster.model_validate(
        {**base.model_dump(mode="json"), "study_contacts": [*contacts, DATA_MANAGER]}
    )


async def issues_at_sites(pool: asyncpg.Pool) -> dict[str, Envelope]:
    """An issue at S1 (its result came through ingest, with a receipt), one at S2, and
    one about a subject nobody enrolled."""
    at_s1, at_s2 = signal_on_result("S1"), signal_on_result("S2")
    stray = haemoglobin("NOT-ENROLLED-1")
    found = {
        "S1": data_quality_issue(at_s1.subject_id, at_s1.result),
        "S2": data_quality_issue(at_s2.subject_id, at_s2.result, "implausible-value"),
        "unknown": data_quality_issue("NOT-ENROLLED-1", stray, "unknown-subject"),
    }
    await store(pool, at_s1.enrolment, at_s1.result, at_s2.enrolment, at_s2.result, stray)
    await store(pool, *found.values())
    async with pool.acquire() as connection:
        await insert_receipt(
            connection,
            ReceiptRow(
                receipt_id=uuid.UUID(int=17),
                channel="mllp",
                source="127.0.0.1",
                content_type="x-application/hl7-v2+er7",
                raw=RAW,
                outcome="accepted",
                reason=None,
                event_ids=(at_s1.result.id,),
            ),
        )
    return found


def listed(page: str) -> list[str]:
    return re.findall(r'action="/workspace/data-quality/([0-9a-f-]+)/review"', page)


async def test_the_data_manager_sees_every_issue_with_its_receipt_never_the_raw_message(
    pool: asyncpg.Pool,
) -> None:
    found = await issues_at_sites(pool)
    app, _ = workspace_app(pool, context(with_data_manager(), ManualClock()), "dm")
    async with client(app) as http:
        page = await http.get("/workspace/data-quality")
    assert page.status_code == 200
    assert set(listed(page.text)) == {str(e.id) for e in found.values()}
    text = re.sub(r"\s+", " ", page.text)
    assert str(uuid.UUID(int=17)) in text
    assert "Channel mllp" in text
    assert "accepted" in text
    assert "Unit not convertible" in text
    assert "Unknown subject" in text
    assert "Roe" not in text
    assert "PID" not in text


async def test_site_staff_see_their_sites_issues_and_the_medical_monitor_the_study(
    pool: asyncpg.Pool,
) -> None:
    found = await issues_at_sites(pool)
    ctx = context(with_data_manager(), ManualClock())
    seen: dict[str, set[str]] = {}
    for person in ("pi1", "pi2", "mm"):
        app, _ = workspace_app(pool, ctx, person)
        async with client(app) as http:
            seen[person] = set(listed((await http.get("/workspace/data-quality")).text))
    assert seen["pi1"] == {str(found["S1"].id)}
    assert seen["pi2"] == {str(found["S2"].id)}
    assert seen["mm"] == {str(e.id) for e in found.values()}


async def test_marking_reviewed_records_one_event_per_person_and_moves_the_issue(
    pool: asyncpg.Pool,
) -> None:
    found = await issues_at_sites(pool)
    ctx = context(with_data_manager(), ManualClock())
    issue = found["S1"]
    action = f"/workspace/data-quality/{issue.id}/review"
    app, _ = workspace_app(pool, ctx, "dm")
    outsider, _ = workspace_app(pool, ctx, "pi2")
    async with client(app) as http:
        forged = await http.post(action, data={"csrf": "stale", "note": "x"})
        too_long = await http.post(action, data={"csrf": "test-csrf", "note": "n" * 1001})
        done = await http.post(
            action,
            data={"csrf": "test-csrf", "note": "Lab asked to resend in g/dL", "back": "kind=x"},
        )
        again = await http.post(action, data={"csrf": "test-csrf", "note": "second thoughts"})
        open_issues = await http.get("/workspace/data-quality")
        reviewed = await http.get("/workspace/data-quality", params={"reviewed": "yes"})
        by_kind = await http.get(
            "/workspace/data-quality", params={"reviewed": "all", "kind": "implausible-value"}
        )
        bad_kind = await http.get("/workspace/data-quality", params={"kind": "<script>"})
    async with client(outsider) as http:
        not_theirs = await http.post(action, data={"csrf": "test-csrf"})
    assert forged.status_code == 403
    assert too_long.status_code == 422
    assert "Note: keep it to 1000 characters" in too_long.text
    assert done.status_code == again.status_code == 303
    assert done.headers["location"] == "/workspace/data-quality?kind=x"
    assert not_theirs.status_code == 404
    rows = await pool.fetch(
        "SELECT stream_id, payload_json FROM events WHERE type = $1",
        DataQualityIssueReviewed.event_type,
    )
    assert len(rows) == 1
    review = DataQualityIssueReviewed.model_validate_json(rows[0]["payload_json"])
    assert rows[0]["stream_id"] == f"data-quality-{issue.id}"
    assert (review.issue_id, review.person_id, review.role) == (issue.id, "dm", "data_manager")
    assert review.note == "Lab asked to resend in g/dL"
    subject = issue.subject.split("/")[1] if issue.subject else ""
    assert subject
    assert subject not in open_issues.text
    assert subject in reviewed.text
    assert "Reviewed by dm (data manager)" in reviewed.text
    assert "Lab asked to resend in g/dL" in reviewed.text
    assert listed(by_kind.text) == [str(found["S2"].id)]
    assert bad_kind.status_code == 422
    assert "Issue kind: choose one from the list." in bad_kind.text
    assert "<script>" not in bad_kind.text


async def test_the_queue_reads_each_issue_with_its_site_source_message_receipt_and_reviews(
    pool: asyncpg.Pool,
) -> None:
    found = await issues_at_sites(pool)
    first = found["S1"].payload()
    assert isinstance(first, DataQualityIssueRaised)
    review = DataQualityIssueReviewed(
        study_id=STUDY,
        subject_id=first.subject_id,
        issue_id=found["S1"].id,
        person_id="dm",
        role="data_manager",
        reviewed_at=T0,
        note="resent",
    )
    await store(pool, wrap(review, source="/tests"))
    async with pool.acquire() as connection:
        queue = await workspace_records.issues(connection, [STUDY, "NCT-OTHER"], limit=10)
        newest = await workspace_records.issues(connection, [STUDY], limit=2)
        elsewhere = await workspace_records.issues(connection, ["NCT-OTHER"], limit=10)
        one = await workspace_records.issue(connection, found["S1"].id)
        unknown = await workspace_records.issue(connection, uuid.uuid4())
        not_an_issue = await workspace_records.issue(connection, first.related_event_id)

    assert [q.issue_id for q in queue] == [found[k].id for k in ("unknown", "S2", "S1")]
    assert [q.site_id for q in queue] == [None, "S2", "S1"]
    assert all(q.source_message_id and q.source_message_id.startswith("LAB-") for q in queue)
    assert [q.receipt.receipt_id if q.receipt else None for q in queue] == [
        None,
        None,
        uuid.UUID(int=17),
    ]
    assert [[r.note for r in q.reviews] for q in queue] == [[], [], ["resent"]]
    assert queue[2].issue == first
    assert [q.issue_id for q in newest] == [found["unknown"].id, found["S2"].id]
    assert elsewhere == []
    assert one == queue[2]
    assert unknown is None
    assert not_an_issue is None


async def generic_plan(connection: asyncpg.Connection, sql: str, arguments: str) -> str:
    """The plan PostgreSQL keeps for ``sql`` once it stops planning per call (a prepared
    statement's generic plan), on a table too small for an index to pay: sequential scans
    are forbidden, to see that the index is usable at all."""
    async with connection.transaction():
        await connection.execute("SET LOCAL enable_seqscan = off")
        await connection.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await connection.execute(f"PREPARE read_plan AS {sql}")
        try:
            rows = await connection.fetch(f"EXPLAIN EXECUTE read_plan ({arguments})")
        finally:
            await connection.execute("DEALLOCATE read_plan")
    return "\n".join(row[0] for row in rows)


async def test_the_queue_and_its_reviews_are_read_through_the_workspace_indexes(
    pool: asyncpg.Pool,
) -> None:
    await issues_at_sites(pool)
    async with pool.acquire() as connection:
        queue = await generic_plan(
            connection,
            read_latest_of_type_sql(DataQualityIssueRaised.event_type),
            f"ARRAY['{STUDY}'], 200",
        )
        reviews = await generic_plan(
            connection,
            read_matching_sql(workspace_records.reviews_match([])),
            f"ARRAY['{uuid.uuid4()}']",
        )
    assert "events_data_quality_issues_idx" in queue
    assert "events_data_quality_reviews_idx" in reviews


async def test_the_issue_a_message_links_to_opens_alone_in_scope_and_nowhere_else(
    pool: asyncpg.Pool,
) -> None:
    """A data-quality message links to ``/workspace/data-quality?issue=<id>``: that issue
    alone, reviewed or not; another site's issue is the workspace's 404, a malformed id
    a 422 naming the field."""
    found = await issues_at_sites(pool)
    ctx = context(with_data_manager(), ManualClock())
    s1, s2 = found["S1"].id, found["S2"].id
    manager, _ = workspace_app(pool, ctx, "dm")
    site_one, _ = workspace_app(pool, ctx, "pi1")
    async with client(manager) as http:
        one = await http.get(f"/workspace/data-quality?issue={s1}")
        bad = await http.get("/workspace/data-quality?issue=not-an-id")
    async with client(site_one) as http:
        mine = await http.get(f"/workspace/data-quality?issue={s1}")
        theirs = await http.get(f"/workspace/data-quality?issue={s2}")
        nothing = await http.get(f"/workspace/data-quality?issue={uuid.uuid4()}")
    assert one.status_code == 200
    assert listed(one.text) == [str(s1)]
    assert mine.status_code == 200
    assert listed(mine.text) == [str(s1)]
    assert (theirs.status_code, nothing.status_code) == (404, 404)
    assert theirs.text == nothing.text
    assert str(s2) not in theirs.text
    assert bad.status_code == 422
    assert "Issue:" in bad.text
    assert "not-an-id" not in bad.text
