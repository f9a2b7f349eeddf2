"""Who is told (issue 15), end to end without a server: the rules service's handler on its
in-memory store, the notifier's handlers on theirs (the twins of
tests/integration/test_notifier_issue15_routing.py, which runs them on PostgreSQL, with
the catch-up and a real SMTP server)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from services.ingest.domain.json_events import events_for
from services.notifier import handlers
from services.notifier.adapters.in_memory import InMemoryNotifierUnitOfWork
from services.safety_rules.adapters.rule_pack_files import load_rule_packs
from services.safety_rules.handlers.facts import BatchOutcome, handle_batch
from shared.events import (
    Envelope,
    LabResultReported,
    SafetySignalRouted,
    wrap,
)
from shared.events.notifications import NotificationOpened
from tests.support.notifier import RULES_STUDY, context, implausible, study_roster
from tests.support.notifier_in_memory import (
    RecordingSender,
    email_worker,
    plan,
    rendered,
    store_for,
    stream_types,
    token_planned_for,
)
from tests.support.rules_harness import InMemoryRulesStore, fact
from tests.support.services import REPO

STUDY = RULES_STUDY
PACKS = load_rule_packs(REPO / "studies")


async def judged(rules: InMemoryRulesStore, *envelopes: Envelope) -> BatchOutcome:
    """One batch through the rules service, committed."""
    with rules.transaction():
        return await handle_batch(list(envelopes), rules.unit_of_work(), PACKS)


def _answers(types: list[str]) -> list[str]:
    """A notification stream's events less its deliveries' attempts and outcomes."""
    return [t for t in types if not t.startswith("delivery_")]


def mail_with(sender: RecordingSender, prefix: str, to: str) -> str:
    (mail,) = [
        d
        for d in sender.sent
        if d.subject_line.startswith(f"[Vigil] {prefix}") and d.recipient == to
    ]
    return mail.body_text


def told(store: InMemoryNotifierUnitOfWork, signal_id: uuid.UUID) -> list[tuple[str, str]]:
    return sorted(
        (row.delivery.person_id, row.delivery.purpose)
        for row in store.outbox()
        if row.delivery.signal_id == signal_id
    )


async def test_a_protocol_analyte_in_an_unknown_unit_alerts_the_medical_monitor() -> None:
    ctx = context(study_roster())
    store, sender = store_for(ctx), RecordingSender()
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
    outcome = await judged(InMemoryRulesStore(), *envelopes)
    await plan(store, ctx, *envelopes[1:], *outcome.data_quality)  # as the catch-up does
    await email_worker(store, sender, ctx).send_due()

    body = " ".join(mail_with(sender, "UNKNOWN UNIT: ", "mm@x.org").split())
    assert "A protocol analyte in an unknown unit" in body
    assert "haemoglobin" in body
    assert "a unit Vigil does not recognise" in body
    # acknowledged, with a deadline and escalation: in the issue's queue entry
    assert f"/workspace/data-quality?issue={envelopes[1].id}" in body
    assert "review and acknowledge it" in body
    assert all("Marrowfield" not in d.subject_line + d.body_text for d in sender.sent)
    # delivered again: nothing new
    assert await plan(store, ctx, *envelopes[1:], *outcome.data_quality) == 0
    issue_id = envelopes[1].id
    assert _answers(await stream_types(store, issue_id)) == ["opened"]
    async with store:
        (opened, *_) = await store.notification_events(issue_id)
    assert isinstance(opened, NotificationOpened)
    assert opened.acknowledge_by is not None


async def test_a_route_a_rule_could_not_read_is_acknowledged_by_the_medical_monitor() -> None:
    ctx = context(study_roster())
    store = store_for(ctx)
    subject = "01-066"
    enrolment = wrap(fact({"enrol": {"site": "S1"}}, subject), source="/t")
    medication = fact(
        {"med": {"drug": "Prednisone", "dose": 20, "route": "as per protocol"}}, subject
    )
    outcome = await judged(InMemoryRulesStore(), enrolment, wrap(medication, source="/t"))
    (issue,) = outcome.data_quality
    assert issue.payload().issue == "route-not-recognised"  # type: ignore[attr-defined]

    assert await plan(store, ctx, issue) == 1
    alert = rendered(store, ctx, "data-quality")
    assert alert.subject_line.startswith(f"[Vigil] ROUTE NOT RECOGNISED: {STUDY} subject {subject}")
    assert "obtain the route from the site" in " ".join(alert.body_text.split())
    assert "/workspace/signals/" in alert.body_text  # a prohibited dose may hide behind it
    assert "as per protocol" not in alert.body_text  # the route as sent
    assert told(store, issue.id) == [("mm", "data-quality")]


async def test_an_implausible_value_reaches_the_data_manager_as_a_notice() -> None:
    ctx = context(study_roster())
    store, sender = store_for(ctx), RecordingSender()
    envelope = implausible("01-062")
    assert await plan(store, ctx, envelope) == 1
    assert await plan(store, ctx, envelope) == 0  # redelivered: told once
    await email_worker(store, sender, ctx).send_due()

    notice = mail_with(sender, "IMPLAUSIBLE VALUE: ", "dm@x.org")
    assert "query the value with the laboratory or site" in " ".join(notice.split())
    assert "/workspace/signals/" not in notice
    assert told(store, envelope.id) == [("dm", "data-quality")]


async def test_without_a_data_manager_the_medical_monitor_is_told() -> None:
    ctx = context(study_roster(data_manager=False))
    store = store_for(ctx)
    envelope = implausible("01-063")
    assert await plan(store, ctx, envelope) == 1
    assert told(store, envelope.id) == [("mm", "data-quality")]


async def test_an_unknown_subject_s_signal_reaches_the_site_once_the_subject_is_enrolled() -> None:
    ctx = context(study_roster())
    store, sender, rules = store_for(ctx), RecordingSender(), InMemoryRulesStore()
    subject = "01-064"
    result = wrap(
        fact({"lab": {"loinc": "718-7", "value": 8.5, "unit": "g/dL"}}, subject), source="/t"
    )
    first = await judged(rules, result)
    (raised,) = first.signals
    assert await plan(store, ctx, *first.signals, *first.data_quality) == 2  # signal, issue
    await email_worker(store, sender, ctx).send_due()
    monitor_alert = mail_with(sender, f"{STUDY} subject {subject}: ", "mm@x.org")
    assert "unknown (subject not enrolled in Vigil)" in monitor_alert

    enrolment = wrap(fact({"enrol": {"site": "S1"}}, subject), source="/t")
    second = await judged(rules, enrolment)
    (routing,) = second.signals
    assert isinstance(routing.payload(), SafetySignalRouted)
    assert await plan(store, ctx, routing) == 2  # the site's investigator and sub-investigator
    assert await plan(store, ctx, routing) == 0  # redelivered: nobody twice
    # the raising and the routing read again (as the catch-up does): nothing new
    assert await plan(store, ctx, raised, routing) == 0
    assert await judged(rules, enrolment) == BatchOutcome(duplicates=1)  # routed once
    await email_worker(store, sender, ctx).send_due()

    for person in ("pi1", "sub1"):
        body = mail_with(sender, "NOW AT YOUR SITE: ", f"{person}@x.org")
        assert "now enrolled at your site" in " ".join(body.split())
        assert "S1" in body
        assert "/workspace/signals/" in body
    assert told(store, raised.id) == [("mm", "raised"), ("pi1", "routed-S1"), ("sub1", "routed-S1")]

    # the site's investigator acknowledges with the link the routing sent
    token = token_planned_for(store, ctx, "pi1")
    done = await handlers.acknowledge(
        store, raised.id, token=token, assessment="clinically-significant", comment="", context=ctx
    )
    assert done.new
    assert _answers(await stream_types(store, raised.id)) == ["opened", "routed", "acknowledged"]


async def test_an_acknowledged_signal_is_routed_to_the_site_for_information() -> None:
    ctx = context(study_roster())
    store, rules = store_for(ctx), InMemoryRulesStore()
    subject = "01-065"
    result = wrap(
        fact({"lab": {"loinc": "718-7", "value": 8.5, "unit": "g/dL"}}, subject), source="/t"
    )
    first = await judged(rules, result)
    (raised,) = first.signals
    await plan(store, ctx, raised)
    token = token_planned_for(store, ctx, "mm")
    done = await handlers.acknowledge(
        store,
        raised.id,
        token=token,
        assessment="not-clinically-significant",
        comment="",
        context=ctx,
    )
    assert done.new

    second = await judged(rules, wrap(fact({"enrol": {"site": "S1"}}, subject), source="/t"))
    assert await plan(store, ctx, *second.signals) == 2
    notice = rendered(store, ctx, "routed-S1")
    assert notice.subject_line.startswith("[Vigil] NOW AT YOUR SITE (ACKNOWLEDGED): ")
    assert "no action is needed" in notice.body_text
    assert "/workspace/signals/" not in notice.body_text
