"""Who is told (issue 15): a protocol analyte in an unknown unit alerts the medical monitor,
what needs a query reaches the data manager (the monitor when a study has none), and a
signal raised for a subject nobody knew reaches the site's investigators once the subject
is enrolled. Real PostgreSQL, the rules service's handler, the notifier's catch-up and a
real SMTP server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from services.ingest.domain.json_events import events_for
from services.notifier.entrypoints.catch_up import SignalCatchUp
from services.safety_rules.adapters.postgres import PostgresRulesUnitOfWork
from services.safety_rules.adapters.rule_pack_files import load_rule_packs
from services.safety_rules.handlers.facts import BatchOutcome, handle_batch
from shared.events import (
    Envelope,
    LabResultReported,
    SafetySignalRouted,
    wrap,
)
from tests.integration.test_notifier_escalation import app_client
from tests.support.mail import MailCatcher
from tests.support.notifier import (
    RULES_STUDY,
    context,
    email_worker,
    implausible,
    link_planned_for,
    plan,
    rendered,
    stream_types,
    study_roster,
)
from tests.support.rules_harness import fact
from tests.support.services import REPO

pytestmark = pytest.mark.integration
STUDY = RULES_STUDY
PACKS = load_rule_packs(REPO / "studies")


async def judged(pool: asyncpg.Pool, *envelopes: Envelope) -> BatchOutcome:
    """One batch through the rules service, committed."""
    async with pool.acquire() as connection, connection.transaction():
        return await handle_batch(list(envelopes), PostgresRulesUnitOfWork(connection), PACKS)


def _answers(types: list[str]) -> list[str]:
    """A notification stream's events less its deliveries' attempts and outcomes."""
    return [t for t in types if not t.startswith("delivery_")]


def subject_of(mail: Any) -> str:
    """The Subject as a reader sees it (a long one is folded after "Subject:")."""
    return " ".join(str(mail.message["Subject"]).split())


def mail_with(mailbox: MailCatcher, prefix: str, to: str) -> Any:
    (mail,) = mailbox.wait_for(
        lambda m: subject_of(m).startswith(f"[Vigil] {prefix}") and m.envelope_to == [to]
    )
    return mail


async def test_a_protocol_analyte_in_an_unknown_unit_alerts_the_medical_monitor(
    pool: asyncpg.Pool, own_smtp: tuple[int, MailCatcher]
) -> None:
    port, mailbox = own_smtp
    ctx = context(study_roster())
    result = LabResultReported(
        study_id=STUDY,
        subject_id="01-061",
        loinc_code="718-7",
        value=Decimal("7.0"),
        unit="grams per Marrowfield",  # sender text: reaches no message
        collected_at=datetime(2026, 6, 1, 9, tzinfo=UTC),
        source_message_id="MSG-61",
    )
    envelopes = events_for(result, source="/test", correlation_id=uuid.uuid4(), now=None)
    assert [e.payload().issue for e in envelopes[1:]] == ["unit-not-convertible"]  # type: ignore[attr-defined]
    outcome = await judged(pool, *envelopes)
    catch_up = SignalCatchUp(pool, ctx, grace_seconds=0, poll_seconds=1.0)
    while await catch_up.step(None):
        pass  # Kafka never brought the issues: the audit log is enough
    await email_worker(pool, port, ctx).send_due()

    alert = mail_with(mailbox, "UNKNOWN UNIT: ", "mm@x.org")
    body = " ".join(alert.body.split())
    assert "A protocol analyte in an unknown unit" in body
    assert "haemoglobin" in body
    assert "a unit Vigil does not recognise" in body
    # acknowledged, with a deadline and escalation: in the issue's data-quality queue entry
    assert "/workspace/data-quality?issue=" in body
    assert "review and acknowledge it" in body
    assert "Marrowfield" not in alert.everything
    # delivered again by Kafka after the catch-up: nothing new
    assert await plan(pool, ctx, *envelopes[1:], *outcome.data_quality) == 0
    issue_id = envelopes[1].id
    async with pool.acquire() as connection:
        assert _answers(await stream_types(connection, issue_id)) == ["opened"]
    deadline = await pool.fetchval(
        "SELECT payload_json::jsonb ->> 'acknowledge_by' FROM events "
        "WHERE stream_id = $1 AND type LIKE '%opened%'",
        f"notification-{issue_id}",
    )
    assert deadline is not None


async def test_a_route_a_rule_could_not_read_is_acknowledged_by_the_medical_monitor(
    pool: asyncpg.Pool,
) -> None:
    ctx = context(study_roster())
    subject = "01-066"
    enrolment = wrap(fact({"enrol": {"site": "S1"}}, subject), source="/t")
    medication = fact(
        {"med": {"drug": "Prednisone", "dose": 20, "route": "as per protocol"}}, subject
    )
    outcome = await judged(pool, enrolment, wrap(medication, source="/t"))
    (issue,) = outcome.data_quality
    assert issue.payload().issue == "route-not-recognised"  # type: ignore[attr-defined]

    assert await plan(pool, ctx, issue) == 1
    alert = await rendered(pool, ctx, "data-quality")
    assert alert.subject_line.startswith(f"[Vigil] ROUTE NOT RECOGNISED: {STUDY} subject {subject}")
    assert "obtain the route from the site" in " ".join(alert.body_text.split())
    assert "/workspace/signals/" in alert.body_text  # a prohibited dose may hide behind it
    assert "as per protocol" not in alert.body_text  # the route as sent
    told = await pool.fetch("SELECT person_id FROM deliveries WHERE signal_id = $1", issue.id)
    assert [r["person_id"] for r in told] == ["mm"]


async def test_an_implausible_value_reaches_the_data_manager_as_a_notice(
    pool: asyncpg.Pool, own_smtp: tuple[int, MailCatcher]
) -> None:
    port, mailbox = own_smtp
    ctx = context(study_roster())
    envelope = implausible("01-062")
    assert await plan(pool, ctx, envelope) == 1
    assert await plan(pool, ctx, envelope) == 0  # redelivered: told once
    await email_worker(pool, port, ctx).send_due()

    notice = mail_with(mailbox, "IMPLAUSIBLE VALUE: ", "dm@x.org")
    assert "query the value with the laboratory or site" in " ".join(notice.body.split())
    assert "/workspace/signals/" not in notice.body
    told = await pool.fetch("SELECT person_id FROM deliveries WHERE signal_id = $1", envelope.id)
    assert [r["person_id"] for r in told] == ["dm"]


async def test_without_a_data_manager_the_medical_monitor_is_told(pool: asyncpg.Pool) -> None:
    ctx = context(study_roster(data_manager=False))
    envelope = implausible("01-063")
    assert await plan(pool, ctx, envelope) == 1
    told = await pool.fetch("SELECT person_id FROM deliveries WHERE signal_id = $1", envelope.id)
    assert [r["person_id"] for r in told] == ["mm"]


async def test_an_unknown_subject_s_signal_reaches_the_site_once_the_subject_is_enrolled(
    pool: asyncpg.Pool, own_smtp: tuple[int, MailCatcher]
) -> None:
    port, mailbox = own_smtp
    ctx = context(study_roster())
    subject = "01-064"
    result = wrap(
        fact({"lab": {"loinc": "718-7", "value": 8.5, "unit": "g/dL"}}, subject), source="/t"
    )
    first = await judged(pool, result)
    (raised,) = first.signals
    assert await plan(pool, ctx, *first.signals, *first.data_quality) == 2  # signal, issue
    await email_worker(pool, port, ctx).send_due()
    monitor_alert = mail_with(mailbox, f"{STUDY} subject {subject}: ", "mm@x.org")
    assert "unknown (subject not enrolled in Vigil)" in monitor_alert.body

    enrolment = wrap(fact({"enrol": {"site": "S1"}}, subject), source="/t")
    second = await judged(pool, enrolment)
    (routing,) = second.signals
    assert isinstance(routing.payload(), SafetySignalRouted)
    assert await plan(pool, ctx, routing) == 2  # the site's investigator and sub-investigator
    assert await plan(pool, ctx, routing) == 0  # redelivered by Kafka: nobody twice
    catch_up = SignalCatchUp(pool, ctx, grace_seconds=0, poll_seconds=1.0)
    while await catch_up.step(None):
        pass  # the catch-up reads the raising and the routing again: nothing new
    assert await judged(pool, enrolment) == BatchOutcome(duplicates=1)  # routed once
    await email_worker(pool, port, ctx).send_due()

    for person in ("pi1", "sub1"):
        mail = mail_with(mailbox, "NOW AT YOUR SITE: ", f"{person}@x.org")
        assert "now enrolled at your site" in " ".join(mail.body.split())
        assert "S1" in mail.body
        assert "/workspace/signals/" in mail.body
    sent = await pool.fetch(
        "SELECT person_id, purpose FROM deliveries WHERE signal_id = $1 ORDER BY 1", raised.id
    )
    assert [(r["person_id"], r["purpose"]) for r in sent] == [
        ("mm", "raised"),
        ("pi1", "routed-S1"),
        ("sub1", "routed-S1"),
    ]

    # the site's investigator acknowledges with the link the routing sent
    link = await link_planned_for(pool, ctx, "pi1")
    token = link.split("token=", 1)[1]
    async with await app_client(pool, ctx) as client:
        done = await client.post(
            f"/v1/signals/{raised.id}/acknowledgements",
            json={"token": token, "assessment": "clinically-significant"},
        )
    assert done.status_code == 201, done.text
    async with pool.acquire() as connection:
        answers = _answers(await stream_types(connection, raised.id))
    assert answers == ["opened", "routed", "acknowledged"]


async def test_an_acknowledged_signal_is_routed_to_the_site_for_information(
    pool: asyncpg.Pool,
) -> None:
    ctx = context(study_roster())
    subject = "01-065"
    result = wrap(
        fact({"lab": {"loinc": "718-7", "value": 8.5, "unit": "g/dL"}}, subject), source="/t"
    )
    first = await judged(pool, result)
    (raised,) = first.signals
    await plan(pool, ctx, raised)
    token = (await link_planned_for(pool, ctx, "mm")).split("token=", 1)[1]
    async with await app_client(pool, ctx) as client:
        done = await client.post(
            f"/v1/signals/{raised.id}/acknowledgements",
            json={"token": token, "assessment": "not-clinically-significant"},
        )
    assert done.status_code == 201, done.text

    second = await judged(pool, wrap(fact({"enrol": {"site": "S1"}}, subject), source="/t"))
    assert await plan(pool, ctx, *second.signals) == 2
    notice = await rendered(pool, ctx, "routed-S1")
    assert notice.subject_line.startswith("[Vigil] NOW AT YOUR SITE (ACKNOWLEDGED): ")
    assert "no action is needed" in notice.body_text
    assert "/workspace/signals/" not in notice.body_text
