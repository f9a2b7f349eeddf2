"""Escalation on an injectable clock, acknowledgements over HTTP, withdrawal: real PostgreSQL."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from services.notifier import handlers
from services.notifier.domain.links import LinkKey
from services.notifier.domain.roster import Digest, Role, Roster
from services.notifier.entrypoints.acknowledgement_api import acknowledgement_router
from services.notifier.entrypoints.acknowledgement_page import acknowledgement_page_router
from services.notifier.handlers.digests import send_due_digests
from shared.events import (
    DataQualityIssueRaised,
    SafetySignalAmended,
    SafetySignalEscalated,
    SafetySignalRetracted,
    wrap,
)
from tests.support.mail import MailCatcher
from tests.support.notifier import (
    LINK_KEY,
    T0,
    ManualClock,
    context,
    email_worker,
    in_db,
    lifecycle,
    link_planned_for,
    mint,
    plan,
    raised,
    rendered,
    roster,
    signal_of,
    stream_types,
)

pytestmark = pytest.mark.integration


async def recipients(pool: asyncpg.Pool, purpose: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT person_id FROM deliveries WHERE purpose = $1 ORDER BY person_id", purpose
    )
    return [row["person_id"] for row in rows]


async def test_grade_3_unacknowledged_escalates_to_backup_then_medical_monitor(
    pool: asyncpg.Pool,
) -> None:
    clock = ManualClock()
    ctx = context(roster(), clock)
    envelope = raised("S1", grade=3)
    await plan(pool, ctx, envelope)

    clock.advance(hours=3, minutes=59)
    assert await handlers.escalate_due(in_db(pool), ctx) == 0
    clock.advance(minutes=1)  # 4 h: the grade-3 deadline
    assert await handlers.escalate_due(in_db(pool), ctx) == 1
    assert await handlers.escalate_due(in_db(pool), ctx) == 0  # not twice
    # a restarted notifier (new context, same store) derives the same timers: no repeat
    assert await handlers.escalate_due(in_db(pool), context(roster(), clock)) == 0
    # pi1 and sub1 back each other up and were both told: level 1 is the medical monitor
    assert await recipients(pool, "escalation-1") == ["mm"]

    clock.advance(hours=4)
    assert await handlers.escalate_due(in_db(pool), ctx) == 1  # nobody left: recorded, timer stops
    clock.advance(days=30)
    assert await handlers.escalate_due(in_db(pool), ctx) == 0
    async with pool.acquire() as connection:
        types = await stream_types(connection, signal_of(envelope).signal_id)
    assert types == ["opened", "escalated", "escalated"]


async def test_backup_is_the_first_escalation_level(pool: asyncpg.Pool) -> None:
    clock = ManualClock()
    the_roster = roster()
    sites = list(the_roster.sites)
    pi2 = sites[1].people[0].model_copy(update={"backup": "sub1"})
    sites[1] = sites[1].model_copy(update={"people": (pi2,)})
    ctx = context(the_roster.model_copy(update={"sites": tuple(sites)}), clock)
    await plan(pool, ctx, raised("S2", serious=True))  # SAE: 24 h, the medical monitor too
    clock.advance(hours=24)
    assert await handlers.escalate_due(in_db(pool), ctx) == 1
    assert await recipients(pool, "escalation-1") == ["sub1"]


async def app_client(pool: asyncpg.Pool, ctx: Any) -> httpx.AsyncClient:
    app = FastAPI()
    app.include_router(acknowledgement_router(lambda: pool, ctx))
    app.include_router(acknowledgement_page_router(ctx))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notifier")


async def token_sent_to(pool: asyncpg.Pool, ctx: Any, person_id: str) -> str:
    return (await link_planned_for(pool, ctx, person_id)).split("token=", 1)[1]


async def test_acknowledgement_is_recorded_and_stops_escalation(pool: asyncpg.Pool) -> None:
    clock = ManualClock()
    ctx = context(roster(), clock)
    envelope = raised("S1", grade=3)
    await plan(pool, ctx, envelope)
    token = await token_sent_to(pool, ctx, "pi1")
    body = {"token": token, "assessment": "clinically-significant", "comment": "repeat Hb"}
    url = f"/v1/signals/{signal_of(envelope).signal_id}/acknowledgements"

    async with await app_client(pool, ctx) as client:
        first = await client.post(url, json=body)
        again = await client.post(url, json=body)

    assert first.status_code == 201, first.text
    assert first.json()["person_id"] == "pi1"
    assert again.status_code == 200  # the same acknowledgement, recorded once
    clock.advance(hours=5)
    assert await handlers.escalate_due(in_db(pool), ctx) == 0
    stored = await pool.fetchrow(
        "SELECT payload FROM events WHERE event_id = $1", uuid.UUID(first.json()["event_id"])
    )
    assert '"assessment": "clinically-significant"' in stored["payload"]


async def test_forged_altered_expired_and_foreign_links_are_refused(pool: asyncpg.Pool) -> None:
    clock = ManualClock()
    ctx = context(roster(), clock)
    envelope = raised("S1")
    other = raised("S1")
    await plan(pool, ctx, envelope, other)
    the_id = signal_of(envelope).signal_id
    genuine = await token_sent_to(pool, ctx, "pi1")
    key_id, claims, mac = genuine.split(".")
    not_the_key = LinkKey(LINK_KEY.key_id, b"not-the-key" * 3)
    cases = {
        "forged": (mint(the_id, "pi1", key=not_the_key), 401),
        "altered": (f"{key_id}.{claims}." + ("A" if mac[0] != "A" else "B") + mac[1:], 401),
        "other signal": (mint(signal_of(other).signal_id, "pi1"), 401),
        "another site": (mint(the_id, "pi2"), 403),
    }
    url = f"/v1/signals/{the_id}/acknowledgements"
    async with await app_client(pool, ctx) as client:
        for name, (token, status) in cases.items():
            body = {"token": token, "assessment": "not-clinically-significant"}
            response = await client.post(url, json=body)
            assert response.status_code == status, (name, response.text)
            assert response.headers["content-type"] == "application/problem+json"
        unknown = await client.post(
            f"/v1/signals/{uuid.uuid4()}/acknowledgements",
            json={"token": genuine, "assessment": "sae-confirmed"},
        )
        assert unknown.status_code == 404
        clock.advance(hours=169)  # past the link's validity
        expired = await client.post(url, json={"token": genuine, "assessment": "sae-confirmed"})
        assert expired.status_code == 401
        assert "expired" in expired.json()["detail"]
    async with pool.acquire() as connection:
        assert "acknowledged" not in await stream_types(connection, the_id)


async def test_retraction_tells_the_recipients_and_stops_escalation(pool: asyncpg.Pool) -> None:
    clock = ManualClock()
    ctx = context(roster(), clock)
    envelope = raised("S2", grade=4)
    await plan(pool, ctx, envelope)
    retraction = SafetySignalRetracted(
        **lifecycle(signal_of(envelope)),
        reason="the haemoglobin result was entered in error",
    )
    await plan(pool, ctx, wrap(retraction, source="/test/rules", time=T0))
    assert await pool.fetchval(
        "SELECT count(*) FROM deliveries WHERE purpose = 'raised' AND status = 'cancelled'"
    )
    assert await recipients(pool, "withdrawn") == ["pi2"]
    withdrawn = await rendered(pool, ctx, "withdrawn")
    assert "entered in error" in withdrawn.body_text
    clock.advance(days=10)
    assert await handlers.escalate_due(in_db(pool), ctx) == 0


async def test_unknown_subject_reaches_the_medical_monitor(pool: asyncpg.Pool) -> None:
    ctx = context(roster())
    issue = DataQualityIssueRaised(
        study_id="NCT-NOTIFY",
        subject_id="X-404",
        issue="unknown-subject",
        detail="no enrolment for subject X-404",
        related_event_id=uuid.uuid4(),
    )
    assert await plan(pool, ctx, wrap(issue, source="/test/rules", time=T0)) == 1
    assert await recipients(pool, "data-quality") == ["mm"]


@pytest.mark.parametrize("kind", ["abnormal-result-unreadable", "result-unreadable"])
async def test_an_unreadable_abnormal_result_escalates_unacknowledged_a_plain_one_informs(
    pool: asyncpg.Pool, kind: str
) -> None:
    """The value behind an abnormal flag may be critical: unacknowledged by the deadline
    of a signal of unknown grade, the monitor's backup is told, as for a signal."""
    document = roster().model_dump(mode="json")
    document["study_contacts"][0]["backup"] = "pi2"
    with_backup = Roster.model_validate(document)
    clock = ManualClock()
    ctx = context(with_backup, clock)
    issue = DataQualityIssueRaised(
        study_id="NCT-NOTIFY",
        subject_id=f"X-{kind[:4]}",
        issue=kind,  # type: ignore[arg-type]
        detail="haemoglobin (LOINC 718-7) could not be read: OBX[3], field OBX-5",
        related_event_id=uuid.uuid4(),
    )
    assert await plan(pool, ctx, wrap(issue, source="/test/rules", time=T0)) == 1
    clock.advance(hours=71, minutes=59)
    assert await handlers.escalate_due(in_db(pool), ctx) == 0
    clock.advance(minutes=1)  # 72 h: the deadline of a signal without a grade
    escalated = await handlers.escalate_due(in_db(pool), ctx)
    assert escalated == (1 if kind == "abnormal-result-unreadable" else 0)
    if escalated:
        assert await recipients(pool, "escalation-1") == ["pi2"]


async def test_findings_wait_for_the_daily_digest_and_are_sent_once(
    pool: asyncpg.Pool, own_smtp: tuple[int, MailCatcher]
) -> None:
    clock = ManualClock()  # 09:00; the digest hour is 07:00 UTC
    the_roster = roster().model_copy(
        update={"digest": Digest(roles=(Role.SUB_INVESTIGATOR,), hour_utc=7)}
    )
    ctx = context(the_roster, clock)
    finding, threshold = raised("S1", severity="finding", grade=1), raised("S1", grade=1)
    await plan(pool, ctx, finding, threshold)
    assert await recipients(pool, "raised") == ["pi1", "pi1", "sub1"]  # threshold: at once
    assert await send_due_digests(in_db(pool), ctx) == 0  # held after today's digest hour
    clock.advance(hours=22)  # 07:00 the next day
    assert await send_due_digests(in_db(pool), ctx) == 1
    assert await send_due_digests(in_db(pool), ctx) == 0
    assert await send_due_digests(in_db(pool), context(the_roster, clock)) == 0  # after a restart
    (digest,) = await pool.fetch("SELECT * FROM deliveries WHERE purpose LIKE 'digest-%'")
    assert digest["person_id"] == "sub1"
    assert digest["purpose"] == "digest-2026-06-02"
    port, mailbox = own_smtp
    await email_worker(pool, port, ctx).send_due()
    mail = mailbox.wait_for(lambda m: "DIGEST" in str(m.message["Subject"]))[0]
    assert mail.envelope_to == ["sub1@x.org"]
    # each finding carries its link into the workspace, and no token
    assert f"https://vigil.example/workspace/signals/{signal_of(finding).signal_id}" in mail.body
    assert "token" not in mail.body


async def test_worse_grade_tells_again_and_shortens_the_deadline(pool: asyncpg.Pool) -> None:
    clock = ManualClock()
    ctx = context(roster(), clock)
    envelope = raised("S2", grade=2)  # 72 h
    await plan(pool, ctx, envelope)
    worse = SafetySignalEscalated(
        **lifecycle(signal_of(envelope)),
        previous_grade=2,
        grade=3,
        input_event_ids=(uuid.uuid4(),),
        computed_values={},
        observed_value=Decimal("7.1"),
        observed_unit="g/dL",
        collected_at=T0,
    )
    clock.advance(hours=1)
    await plan(pool, ctx, wrap(worse, source="/test/rules", time=clock.now()))
    assert await recipients(pool, "grade-3") == ["pi2"]
    assert "7.1 g/dL" in (await rendered(pool, ctx, "grade-3")).body_text
    clock.advance(hours=4)  # 5 h after raising: the grade-3 deadline (4 h) has passed
    assert await handlers.escalate_due(in_db(pool), ctx) == 1


async def test_a_correction_to_a_worse_grade_tells_again_a_milder_one_does_not(
    pool: asyncpg.Pool,
) -> None:
    clock = ManualClock()
    ctx = context(roster(), clock)
    envelope = raised("S2", grade=2)
    await plan(pool, ctx, envelope)

    def amended(grade: int, value: str) -> SafetySignalAmended:
        return SafetySignalAmended(
            **lifecycle(signal_of(envelope)),
            reason="the laboratory corrected the result",
            previous_grade=2,
            grade=grade,
            input_event_ids=(uuid.uuid4(),),
            superseded_event_ids=(uuid.uuid4(),),
            computed_values={},
            observed_value=Decimal(value),
            observed_unit="g/dL",
            collected_at=T0,
        )

    clock.advance(hours=1)
    await plan(pool, ctx, wrap(amended(2, "8.6"), source="/test/rules", time=clock.now()))
    assert await recipients(pool, "grade-2") == []  # the same grade: nothing new to tell
    await plan(pool, ctx, wrap(amended(3, "7.4"), source="/test/rules", time=clock.now()))
    assert await recipients(pool, "grade-3") == ["pi2"]
    assert "7.4 g/dL" in (await rendered(pool, ctx, "grade-3")).body_text


async def test_the_old_link_page_leads_to_the_workspace_and_the_token_records_through_the_api(
    pool: asyncpg.Pool,
) -> None:
    clock = ManualClock()
    ctx = context(roster(), clock)
    envelope = raised("S1", grade=3)
    await plan(pool, ctx, envelope)
    signal = signal_of(envelope)
    token = await token_sent_to(pool, ctx, "pi1")  # what a webhook receiver is given
    workspace = f"https://vigil.example/workspace/signals/{signal.signal_id}"
    async with await app_client(pool, ctx) as client:
        # a link from a message sent before the workspace: the signal's page, no token
        opened = await client.get(f"/signals/{signal.signal_id}/acknowledge?token={token}")
        assert opened.status_code == 303
        assert opened.headers["location"] == workspace
        posted = await client.post(
            f"/signals/{signal.signal_id}/acknowledge",
            content=f"token={token}&assessment=clinically-significant&comment=repeat+Hb",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert posted.status_code == 410
        assert workspace in posted.text
        async with pool.acquire() as connection:
            assert "acknowledged" not in await stream_types(connection, signal.signal_id)

        def acknowledgement(with_token: str) -> dict[str, str]:
            return {"token": with_token, "assessment": "clinically-significant"}

        path = f"/v1/signals/{signal.signal_id}/acknowledgements"
        altered = await client.post(path, json=acknowledgement(f"x{token}"))
        assert altered.status_code == 401
        foreign = await client.post(path, json=acknowledgement(mint(signal.signal_id, "pi2")))
        assert foreign.status_code == 403
        done = await client.post(path, json={**acknowledgement(token), "comment": "repeat Hb"})
        assert done.status_code == 201, done.text
        assert done.json()["comment"] == "repeat Hb"
    async with pool.acquire() as connection:
        assert "acknowledged" in await stream_types(connection, signal.signal_id)
    clock.advance(hours=5)  # past the grade-3 deadline: acknowledged, so no escalation
    assert await handlers.escalate_due(in_db(pool), ctx) == 0
