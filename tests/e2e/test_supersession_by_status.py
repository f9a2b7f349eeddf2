"""Result status, not arrival, decides which report stands: through ingest (JSON over HTTP,
HL7 over MLLP), Kafka, the rules service and the notifier, on real components."""

from __future__ import annotations

import uuid

import asyncpg
import httpx
import pytest

from tests.e2e.test_haemoglobin_alert import about, enrol
from tests.e2e.test_mllp import oru
from tests.support.mail import MailCatcher
from tests.support.mllp import exchange
from tests.support.results import enrolment, haemoglobin, new_subject_id
from tests.support.services import RunningServices
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


async def send(client: httpx.AsyncClient, subject: str, value: str | None, status: str) -> None:
    body = haemoglobin(subject, value or "0", result_status=status, observation_key="LAB-A|HB-1")
    if value is None:  # a cancellation carries no value
        body = {k: v for k, v in body.items() if k not in ("value", "unit")}
    response = await client.post("/v1/lab-results", json=body)
    assert response.status_code == 202, response.text


async def links(db: asyncpg.Connection, subject: str, count: int) -> list[tuple[str, str, str]]:
    """(superseded status, superseding status, reason) of the subject's supersede links,
    once there are ``count`` of them."""

    async def found() -> list[tuple[str, str, str]] | None:
        rows = await db.fetch(
            """SELECT old.payload->>'result_status' AS old, new.payload->>'result_status' AS new,
                      l.payload->>'reason' AS reason
                 FROM events l
                 JOIN events old ON old.event_id = (l.payload->>'superseded_event_id')::uuid
                 JOIN events new ON new.event_id = (l.payload->>'superseding_event_id')::uuid
                WHERE l.subject_id = $1 AND l.type = 'org.vigil.lab_result.superseded.v1'
                ORDER BY l.position""",
            subject,
        )
        return [(r["old"], r["new"], r["reason"]) for r in rows] if len(rows) >= count else None

    return await eventually(found, what=f"{count} supersede link(s) of {subject}")


async def signals(db: asyncpg.Connection, subject: str) -> list[str]:
    rows = await db.fetch(
        "SELECT type FROM events WHERE subject_id = $1 "
        "AND type LIKE 'org.vigil.safety_signal.%' ORDER BY position",
        subject,
    )
    return [r["type"].split(".")[-2] for r in rows]


async def test_a_late_preliminary_after_the_final_raises_nothing(
    client: httpx.AsyncClient, db: asyncpg.Connection, mailbox: MailCatcher
) -> None:
    subject = new_subject_id("SP")
    await enrol(client, db, enrolment(subject))
    await send(client, subject, "12.5", "F")
    await send(client, subject, "7.0", "P")  # late: the lab's preliminary, after its final

    assert await links(db, subject, 1) == [("P", "F", "late")]
    assert await signals(db, subject) == []
    latest = await eventually(
        lambda: db.fetchval(
            "SELECT state->'latest'->'718-7'->>'value' FROM subject_state "
            "WHERE subject_id = $1 AND state->'latest' ? '718-7'",
            subject,
        ),
        what="the subject's state",
    )
    assert latest == "12.5"  # the final stands
    assert mailbox.matching(about(subject)) == []


async def test_a_late_original_after_its_correction_keeps_the_correction_s_outcome(
    client: httpx.AsyncClient, db: asyncpg.Connection, mailbox: MailCatcher
) -> None:
    subject = new_subject_id("SF")
    await enrol(client, db, enrolment(subject))
    await send(client, subject, "12.1", "C")
    await send(client, subject, "7.0", "F")

    assert await links(db, subject, 1) == [("F", "C", "late")]
    assert await signals(db, subject) == []
    assert mailbox.matching(about(subject)) == []


async def test_a_correction_after_the_final_replaces_it_and_withdraws_the_alert(
    client: httpx.AsyncClient, db: asyncpg.Connection, mailbox: MailCatcher
) -> None:
    subject = new_subject_id("SC")
    await enrol(client, db, enrolment(subject))
    await send(client, subject, "7.0", "F")
    mailbox.wait_for(about(subject))  # the alert
    await send(client, subject, "12.1", "C")

    assert await links(db, subject, 1) == [("F", "C", "corrected")]
    await eventually(
        lambda: _has(db, subject, "retracted"), what="the signal retracted by the correction"
    )
    mailbox.wait_for(lambda m: "WITHDRAWN" in str(m.message["Subject"]) and about(subject)(m))


async def test_a_cancellation_after_the_final_retracts_the_signal(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    subject = new_subject_id("SX")
    await enrol(client, db, enrolment(subject))
    await send(client, subject, "7.0", "F")
    await eventually(lambda: _has(db, subject, "raised"), what="the signal raised")
    await send(client, subject, None, "X")

    assert await links(db, subject, 1) == [("F", "X", "retracted")]
    await eventually(lambda: _has(db, subject, "retracted"), what="the signal retracted")
    assert await signals(db, subject) == ["raised", "retracted"]


async def test_a_late_preliminary_over_mllp_after_the_final_raises_nothing(
    services: RunningServices, db: asyncpg.Connection, client: httpx.AsyncClient
) -> None:
    subject = new_subject_id("SH")
    await enrol(client, db, enrolment(subject))
    final = oru(subject, f"F{uuid.uuid4().hex[:8]}", "OBX|1|NM|718-7^Hb^LN||12.5|g/dL|12-16|N|||F")
    late = oru(subject, f"P{uuid.uuid4().hex[:8]}", "OBX|1|NM|718-7^Hb^LN||7.0|g/dL|12-16|L|||P")
    for message in (final, late):
        ack = await exchange(services.mllp_port, message)
        assert str(ack.segment("MSA")[1]) == "AA"

    assert await links(db, subject, 1) == [("P", "F", "late")]
    assert await signals(db, subject) == []


async def _has(db: asyncpg.Connection, subject: str, what: str) -> bool:
    return what in await signals(db, subject)
