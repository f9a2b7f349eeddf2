"""The signed assessment in the workspace (21 CFR 11.50, 11.70, 11.200), over a real
PostgreSQL: the signer is confirmed, the signature is bound to the stored hashes of the
facts, and it stops the escalation as an acknowledgement does."""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any
from urllib.parse import urlencode

import asyncpg
import pytest

from services.notifier import handlers
from services.notifier.domain.roster import Roster
from services.notifier.domain.signature import signature_event_id
from shared.events.notifications import AssessmentSigned, notification_stream
from tests.support.notifier import T0, ManualClock, context, in_db, plan, resolved, roster
from tests.support.notifier import reopened as reopening
from tests.support.signatures import (
    SignalOnResult,
    client,
    signal_on_result,
    store,
    workspace_app,
)

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"


def form(**fields: str) -> dict[str, str]:
    return {
        "csrf": "test-csrf",
        "meaning": "clinically-significant",
        "comment": "Repeat Hb in 48 h.",
        "password": PASSWORD,
        **fields,
    }


def in_beijing() -> Roster:
    """The test roster with site S1 in Asia/Shanghai."""
    data = roster().model_dump(mode="json")
    data["sites"] = [{**site, "timezone": "Asia/Shanghai"} if site["id"] == "S1" else site
                     for site in data["sites"]]  # fmt: skip
    return Roster.model_validate(data)


async def raised_and_planned(
    pool: asyncpg.Pool, clock: ManualClock, site: str = "S1", the_roster: Roster | None = None
) -> tuple[SignalOnResult, handlers.NotifierContext]:
    """A grade-3 signal on a stored result, opened by the notifier (4 h to acknowledge)."""
    ctx = context(the_roster or roster(), clock)
    facts = signal_on_result(site, grade=3)
    await store(pool, *facts.envelopes)
    await plan(pool, ctx, facts.signal)
    return facts, ctx


async def signatures(pool: asyncpg.Pool, signal_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT event_id, payload FROM events WHERE stream_id = $1 AND type = $2",
        notification_stream(signal_id),
        AssessmentSigned.event_type,
    )
    return [
        {
            "event_id": row["event_id"],
            **AssessmentSigned.model_validate_json(row["payload"]).model_dump(),
        }
        for row in rows
    ]


async def test_a_wrong_password_or_code_is_a_422_naming_the_field_and_records_nothing(
    pool: asyncpg.Pool,
) -> None:
    facts, ctx = await raised_and_planned(pool, ManualClock())
    app, signer = workspace_app(pool, ctx, "pi1", code="123456")
    url = f"/workspace/signals/{facts.signal_id}/assess"
    async with client(app) as http:
        wrong_password = await http.post(url, data=form(password="hunter2", code="123456"))
        wrong_code = await http.post(url, data=form(code="654321"))
    assert wrong_password.status_code == 422
    assert "Password: not accepted" in wrong_password.text
    assert "hunter2" not in wrong_password.text
    assert wrong_code.status_code == 422
    assert "One-time code: not accepted" in wrong_code.text
    assert signer.refused == ["password", "code"]
    assert await signatures(pool, facts.signal_id) == []


async def test_a_signature_is_bound_to_the_stored_hashes_of_the_facts_and_shown(
    pool: asyncpg.Pool,
) -> None:
    clock = ManualClock()
    facts, ctx = await raised_and_planned(pool, clock, the_roster=in_beijing())
    clock.advance(minutes=30)
    app, _ = workspace_app(pool, ctx, "pi1")
    url = f"/workspace/signals/{facts.signal_id}/assess"
    async with client(app) as http:
        page = await http.get(url)
        signed = await http.post(url, data=form(meaning="not-clinically-significant"))
        shown = await http.get(signed.headers["location"])
        form_again = await http.get(url)
    assert page.status_code == 200
    assert 'name="password"' in page.text
    # POST/redirect/GET: the signature answers with the signal page, never a page a reload
    # would post the password from again
    assert signed.status_code == 303
    assert signed.headers["location"].startswith(f"/workspace/signals/{facts.signal_id}?")
    assert shown.status_code == 200
    (signature,) = await signatures(pool, facts.signal_id)
    assert signature["event_id"] == signature_event_id(facts.signal_id, "pi1", facts.signal_id)
    assert signature["person_id"] == "pi1"
    assert signature["role"] == "investigator"
    assert signature["printed_name"] == "PI 1"
    assert signature["meaning"] == "not-clinically-significant"
    assert signature["comment"] == "Repeat Hb in 48 h."
    assert signature["signed_at"] == T0.replace(minute=30)
    assert signature["confirmed_by"] == "password"
    assert signature["raised_event_id"] == signature["latest_signal_event_id"] == facts.signal_id
    assert signature["input_event_ids"] == (facts.result.id,)
    rows = await pool.fetch(
        "SELECT event_id, position, hash FROM events WHERE event_id = ANY($1::uuid[]) "
        "ORDER BY position",
        [facts.signal_id, facts.result.id],
    )
    assert signature["raised_position"] == next(
        r["position"] for r in rows if r["event_id"] == facts.signal_id
    )
    digest = hashlib.sha256(b"".join(bytes(r["hash"]) for r in rows)).hexdigest()
    assert signature["facts_digest"] == f"sha256:{digest}"
    # the manifestation (11.50): printed name, date and time in the site's zone, meaning
    text = re.sub(r"\s+", " ", shown.text)
    assert "Your signature is recorded" in text
    assert "PI 1 (pi1, investigator)" in text
    assert "2026-06-01 17:30 CST (Asia/Shanghai)" in text  # the site's time, zone named
    assert "Not clinically significant" in text
    assert "Repeat Hb in 48 h." in text  # the signer's own words are part of the record
    assert 'name="password"' not in form_again.text  # signed: no form any more


async def test_a_signature_stops_the_escalation_and_cancels_the_escalations_waiting(
    pool: asyncpg.Pool,
) -> None:
    clock = ManualClock()
    facts, ctx = await raised_and_planned(pool, clock)
    clock.advance(hours=4)  # the grade-3 deadline: the medical monitor is told
    assert await handlers.escalate_due(in_db(pool), ctx) == 1
    app, _ = workspace_app(pool, ctx, "pi1")
    async with client(app) as http:
        signed = await http.post(f"/workspace/signals/{facts.signal_id}/assess", data=form())
    assert signed.status_code == 303
    statuses = await pool.fetch(
        "SELECT purpose, status FROM deliveries WHERE signal_id = $1 AND purpose LIKE "
        "'escalation-%'",
        facts.signal_id,
    )
    assert [(r["purpose"], r["status"]) for r in statuses] == [("escalation-1", "cancelled")]
    clock.advance(days=3)
    assert await handlers.escalate_due(in_db(pool), ctx) == 0
    planned = await pool.fetchval(
        "SELECT count(*) FROM deliveries WHERE signal_id = $1 AND purpose LIKE 'escalation-%'",
        facts.signal_id,
    )
    assert planned == 1  # no level 2 was planned on the later clock


async def test_signing_again_changes_nothing_but_a_reopened_signal_is_signed_anew(
    pool: asyncpg.Pool,
) -> None:
    clock = ManualClock()
    facts, ctx = await raised_and_planned(pool, clock)
    app, _ = workspace_app(pool, ctx, "pi1")
    url = f"/workspace/signals/{facts.signal_id}/assess"
    async with client(app) as http:
        first = await http.post(url, data=form())
        again = await http.post(url, data=form(meaning="sae-confirmed"))
        assert (first.status_code, again.status_code) == (303, 303)
        assert "signed=new" in first.headers["location"]
        assert "signed=again" in again.headers["location"]
        assert len(await signatures(pool, facts.signal_id)) == 1
        clock.advance(hours=1)
        gone = resolved(facts.signal, clock, "haemoglobin 10.2 g/dL: back in range")
        back = reopening(facts.signal, clock)
        await store(pool, gone, back)
        await plan(pool, ctx, gone, back)
        reopened_page = await http.get(url)
        signed_anew = await http.post(url, data=form(meaning="sae-confirmed"))
    assert 'name="password"' in reopened_page.text
    assert signed_anew.status_code == 303
    assert "signed=new" in signed_anew.headers["location"]
    found = await signatures(pool, facts.signal_id)
    assert [s["meaning"] for s in found] == ["clinically-significant", "sae-confirmed"]
    assert found[1]["episode_event_id"] == back.id
    assert found[1]["latest_signal_event_id"] == back.id


async def test_a_resolved_signal_cannot_be_signed_and_the_page_says_why(
    pool: asyncpg.Pool,
) -> None:
    clock = ManualClock()
    facts, ctx = await raised_and_planned(pool, clock)
    gone = resolved(facts.signal, clock, "haemoglobin 10.2 g/dL: back in range")
    await store(pool, gone)
    await plan(pool, ctx, gone)
    app, signer = workspace_app(pool, ctx, "pi1")
    url = f"/workspace/signals/{facts.signal_id}/assess"
    async with client(app) as http:
        page = await http.get(url)
        refused = await http.post(url, data=form())
    assert "This signal cannot be signed" in page.text
    assert 'name="password"' not in page.text
    assert refused.status_code == 409
    assert "It was resolved (haemoglobin 10.2 g/dL: back in range)" in refused.text
    assert signer.refused == []
    assert await signatures(pool, facts.signal_id) == []


async def test_another_sites_signal_is_not_found_and_a_form_without_the_token_is_refused(
    pool: asyncpg.Pool,
) -> None:
    facts, ctx = await raised_and_planned(pool, ManualClock())
    other_site, _ = workspace_app(pool, ctx, "pi2")
    own_site, _ = workspace_app(pool, ctx, "pi1")
    url = f"/workspace/signals/{facts.signal_id}/assess"
    unknown = f"/workspace/signals/{uuid.uuid4()}/assess"
    async with client(other_site) as http:
        seen = await http.get(url)
        posted = await http.post(url, data=form())
        absent = await http.get(unknown)
    async with client(own_site) as http:
        forged = await http.post(url, data=form(csrf="not-the-session-token"))
    assert (seen.status_code, posted.status_code, absent.status_code) == (404, 404, 404)
    assert seen.text == absent.text  # another site's signal looks like none at all
    assert facts.subject_id not in seen.text
    assert forged.status_code == 403
    assert await signatures(pool, facts.signal_id) == []


@pytest.mark.parametrize(
    ("field", "label"),
    [
        ("meaning", "Meaning"),
        ("comment", "Comment"),
        ("password", "Password"),
        ("code", "One-time code"),
    ],
)
async def test_a_field_sent_twice_is_refused_naming_it_before_the_password_is_tried(
    pool: asyncpg.Pool, field: str, label: str
) -> None:
    facts, ctx = await raised_and_planned(pool, ManualClock())
    app, signer = workspace_app(pool, ctx, "pi1")
    fields = [(name, value) for name, value in form().items() if name != field]
    second = {"meaning": "sae-confirmed", "comment": "other", "password": "x", "code": "1"}
    first = form(code="").get(field, "")
    body = urlencode([*fields, (field, first), (field, second[field])])
    async with client(app) as http:
        answer = await http.post(
            f"/workspace/signals/{facts.signal_id}/assess",
            content=body,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert answer.status_code == 422
    assert f"{label}: sent more than once" in answer.text
    assert signer.refused == []  # refused before the password was checked or counted
    assert await signatures(pool, facts.signal_id) == []


async def test_a_comment_the_audit_log_cannot_keep_is_refused_before_the_password(
    pool: asyncpg.Pool,
) -> None:
    facts, ctx = await raised_and_planned(pool, ManualClock())
    app, signer = workspace_app(pool, ctx, "pi1")
    async with client(app) as http:
        answer = await http.post(
            f"/workspace/signals/{facts.signal_id}/assess",
            data=form(comment="Repeat\x00 Hb", password="a wrong password"),
        )
    assert answer.status_code == 422
    assert "Comment: it holds a character the audit log cannot keep" in answer.text
    assert "Repeat" not in answer.text.split("</form>")[0].split("<textarea")[-1]
    assert signer.refused == []  # the wrong password was never tried nor counted
    assert await signatures(pool, facts.signal_id) == []


async def test_a_second_session_token_is_refused(pool: asyncpg.Pool) -> None:
    facts, ctx = await raised_and_planned(pool, ManualClock())
    app, _ = workspace_app(pool, ctx, "pi1")
    body = urlencode([*form().items(), ("csrf", "forged")])
    async with client(app) as http:
        answer = await http.post(
            f"/workspace/signals/{facts.signal_id}/assess",
            content=body,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert answer.status_code == 403
    assert await signatures(pool, facts.signal_id) == []
