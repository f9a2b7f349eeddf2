"""Escalation on an injectable clock, acknowledgements, withdrawal and digests: the
handlers on the in-memory unit of work (the twins of
tests/integration/test_notifier_escalation.py, which runs them on PostgreSQL)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from services.notifier import handlers
from services.notifier.domain.links import InvalidLink, LinkKey
from services.notifier.domain.roster import Digest, Role, Roster
from services.notifier.handlers.digests import send_due_digests
from shared.events import (
    DataQualityIssueRaised,
    SafetySignalAmended,
    SafetySignalEscalated,
    SafetySignalRetracted,
    wrap,
)
from shared.events.notifications import Assessment
from tests.support.notifier import (
    LINK_KEY,
    T0,
    ManualClock,
    context,
    lifecycle,
    mint,
    raised,
    roster,
    signal_of,
)
from tests.support.notifier_in_memory import (
    RecordingSender,
    email_worker,
    plan,
    recipients,
    rendered,
    store_for,
    stream_types,
    token_planned_for,
)


async def test_grade_3_unacknowledged_escalates_to_backup_then_medical_monitor() -> None:
    clock = ManualClock()
    ctx = context(roster(), clock)
    store = store_for(ctx)
    envelope = raised("S1", grade=3)
    await plan(store, ctx, envelope)

    clock.advance(hours=3, minutes=59)
    assert await handlers.escalate_due(store, ctx) == 0
    clock.advance(minutes=1)  # 4 h: the grade-3 deadline
    assert await handlers.escalate_due(store, ctx) == 1
    assert await handlers.escalate_due(store, ctx) == 0  # not twice
    # a restarted notifier (new context, same store) derives the same timers: no repeat
    assert await handlers.escalate_due(store, context(roster(), clock)) == 0
    # pi1 and sub1 back each other up and were both told: level 1 is the medical monitor
    assert recipients(store, "escalation-1") == ["mm"]

    clock.advance(hours=4)
    assert await handlers.escalate_due(store, ctx) == 1  # nobody left: recorded, timer stops
    clock.advance(days=30)
    assert await handlers.escalate_due(store, ctx) == 0
    types = await stream_types(store, signal_of(envelope).signal_id)
    assert types == ["opened", "escalated", "escalated"]


async def test_backup_is_the_first_escalation_level() -> None:
    clock = ManualClock()
    the_roster = roster()
    sites = list(the_roster.sites)
    pi2 = sites[1].people[0].model_copy(update={"backup": "sub1"})
    sites[1] = sites[1].model_copy(update={"people": (pi2,)})
    ctx = context(the_roster.model_copy(update={"sites": tuple(sites)}), clock)
    store = store_for(ctx)
    await plan(store, ctx, raised("S2", serious=True))  # SAE: 24 h, the medical monitor too
    clock.advance(hours=24)
    assert await handlers.escalate_due(store, ctx) == 1
    assert recipients(store, "escalation-1") == ["sub1"]


async def acknowledge(
    store: handlers.NotifierUnitOfWork,
    ctx: handlers.NotifierContext,
    signal_id: uuid.UUID,
    token: str,
    assessment: Assessment = "clinically-significant",
    comment: str = "",
) -> handlers.Acknowledgement:
    """What the acknowledgement API does with a request (its answers: see the integration
    twin)."""
    return await handlers.acknowledge(
        store, signal_id, token=token, assessment=assessment, comment=comment, context=ctx
    )


async def test_acknowledgement_is_recorded_and_stops_escalation() -> None:
    clock = ManualClock()
    ctx = context(roster(), clock)
    store = store_for(ctx)
    envelope = raised("S1", grade=3)
    await plan(store, ctx, envelope)
    token = token_planned_for(store, ctx, "pi1")
    signal_id = signal_of(envelope).signal_id

    first = await acknowledge(store, ctx, signal_id, token, comment="repeat Hb")
    again = await acknowledge(store, ctx, signal_id, token, comment="repeat Hb")

    assert first.new  # the API answers 201
    assert first.person_id == "pi1"
    assert not again.new  # 200: the same acknowledgement, recorded once
    assert again.event_id == first.event_id
    clock.advance(hours=5)
    assert await handlers.escalate_due(store, ctx) == 0
    async with store:
        stored = await store.acknowledgement(first.event_id)
    assert stored is not None
    assert stored[0].assessment == "clinically-significant"


async def test_a_link_records_one_assessment_whatever_is_sent_with_it_later() -> None:
    ctx = context(roster())
    store = store_for(ctx)
    envelope = raised("S1", grade=3)
    await plan(store, ctx, envelope)
    token = token_planned_for(store, ctx, "pi1")
    signal_id = signal_of(envelope).signal_id

    first = await acknowledge(store, ctx, signal_id, token, "not-clinically-significant")
    other = await acknowledge(store, ctx, signal_id, token, "sae-confirmed", "changed my mind")

    assert (first.new, other.new) == (True, False)
    assert other.assessment == "not-clinically-significant"
    types = await stream_types(store, signal_id)
    assert types.count("acknowledged") == 1


async def test_forged_altered_expired_and_foreign_links_are_refused() -> None:
    clock = ManualClock()
    ctx = context(roster(), clock)
    store = store_for(ctx)
    envelope = raised("S1")
    other = raised("S1")
    await plan(store, ctx, envelope, other)
    the_id = signal_of(envelope).signal_id
    genuine = token_planned_for(store, ctx, "pi1")
    key_id, claims, mac = genuine.split(".")
    not_the_key = LinkKey(LINK_KEY.key_id, b"not-the-key" * 3)
    cases: dict[str, tuple[str, type[Exception]]] = {
        "forged": (mint(the_id, "pi1", key=not_the_key), InvalidLink),  # 401
        "altered": (
            f"{key_id}.{claims}." + ("A" if mac[0] != "A" else "B") + mac[1:],
            InvalidLink,
        ),
        "other signal": (mint(signal_of(other).signal_id, "pi1"), InvalidLink),
        "another site": (mint(the_id, "pi2"), handlers.NotOnRoster),  # 403
    }
    for token, refusal in cases.values():
        with pytest.raises(refusal):
            await acknowledge(store, ctx, the_id, token, "not-clinically-significant")
    with pytest.raises(handlers.UnknownSignal, match="no notification for signal"):  # 404
        await acknowledge(store, ctx, uuid.uuid4(), genuine, "sae-confirmed")
    clock.advance(hours=169)  # past the link's validity
    with pytest.raises(InvalidLink, match="expired"):
        await acknowledge(store, ctx, the_id, genuine, "sae-confirmed")
    assert "acknowledged" not in await stream_types(store, the_id)


async def test_retraction_tells_the_recipients_and_stops_escalation() -> None:
    clock = ManualClock()
    ctx = context(roster(), clock)
    store = store_for(ctx)
    envelope = raised("S2", grade=4)
    await plan(store, ctx, envelope)
    retraction = SafetySignalRetracted(
        **lifecycle(signal_of(envelope)),
        reason="the haemoglobin result was entered in error",
    )
    await plan(store, ctx, wrap(retraction, source="/test/rules", time=T0))
    assert any(
        row.delivery.purpose == "raised" and row.status == "cancelled" for row in store.outbox()
    )
    assert recipients(store, "withdrawn") == ["pi2"]
    withdrawn = rendered(store, ctx, "withdrawn")
    assert "entered in error" in withdrawn.body_text
    clock.advance(days=10)
    assert await handlers.escalate_due(store, ctx) == 0


async def test_a_retracted_signal_has_nothing_to_acknowledge_and_says_why() -> None:
    ctx = context(roster())
    store = store_for(ctx)
    envelope = raised("S1")
    await plan(store, ctx, envelope)
    token = token_planned_for(store, ctx, "pi1")
    retraction = SafetySignalRetracted(**lifecycle(signal_of(envelope)), reason="wrong subject")
    await plan(store, ctx, wrap(retraction, source="/test/rules", time=T0))
    with pytest.raises(handlers.SignalClosed, match="wrong subject") as closed:
        await acknowledge(store, ctx, signal_of(envelope).signal_id, token)
    assert closed.value.status == "retracted"


async def test_unknown_subject_reaches_the_medical_monitor() -> None:
    ctx = context(roster())
    store = store_for(ctx)
    issue = DataQualityIssueRaised(
        study_id="NCT-NOTIFY",
        subject_id="X-404",
        issue="unknown-subject",
        detail="no enrolment for subject X-404",
        related_event_id=uuid.uuid4(),
    )
    assert await plan(store, ctx, wrap(issue, source="/test/rules", time=T0)) == 1
    assert recipients(store, "data-quality") == ["mm"]


@pytest.mark.parametrize("kind", ["abnormal-result-unreadable", "result-unreadable"])
async def test_an_unreadable_abnormal_result_escalates_unacknowledged_a_plain_one_informs(
    kind: str,
) -> None:
    """The value behind an abnormal flag may be critical: unacknowledged by the deadline
    of a signal of unknown grade, the monitor's backup is told, as for a signal."""
    document = roster().model_dump(mode="json")
    document["study_contacts"][0]["backup"] = "pi2"
    with_backup = Roster.model_validate(document)
    clock = ManualClock()
    ctx = context(with_backup, clock)
    store = store_for(ctx)
    issue = DataQualityIssueRaised(
        study_id="NCT-NOTIFY",
        subject_id=f"X-{kind[:4]}",
        issue=kind,  # type: ignore[arg-type]
        detail="haemoglobin (LOINC 718-7) could not be read: OBX[3], field OBX-5",
        related_event_id=uuid.uuid4(),
    )
    assert await plan(store, ctx, wrap(issue, source="/test/rules", time=T0)) == 1
    clock.advance(hours=71, minutes=59)
    assert await handlers.escalate_due(store, ctx) == 0
    clock.advance(minutes=1)  # 72 h: the deadline of a signal without a grade
    escalated = await handlers.escalate_due(store, ctx)
    assert escalated == (1 if kind == "abnormal-result-unreadable" else 0)
    if escalated:
        assert recipients(store, "escalation-1") == ["pi2"]


async def test_findings_wait_for_the_daily_digest_and_are_sent_once() -> None:
    clock = ManualClock()  # 09:00; the digest hour is 07:00 UTC
    the_roster = roster().model_copy(
        update={"digest": Digest(roles=(Role.SUB_INVESTIGATOR,), hour_utc=7)}
    )
    ctx = context(the_roster, clock)
    store = store_for(ctx)
    finding, threshold = raised("S1", severity="finding", grade=1), raised("S1", grade=1)
    await plan(store, ctx, finding, threshold)
    assert recipients(store, "raised") == ["pi1", "pi1", "sub1"]  # threshold: at once
    assert await send_due_digests(store, ctx) == 0  # held after today's digest hour
    clock.advance(hours=22)  # 07:00 the next day
    assert await send_due_digests(store, ctx) == 1
    assert await send_due_digests(store, ctx) == 0
    assert await send_due_digests(store, context(the_roster, clock)) == 0  # after a restart
    (digest,) = [row.delivery for row in store.outbox() if row.delivery.purpose[:7] == "digest-"]
    assert digest.person_id == "sub1"
    assert digest.purpose == "digest-2026-06-02"
    sender = RecordingSender()
    await email_worker(store, sender, ctx).send_due()
    (mail,) = [d for d in sender.sent if "DIGEST" in d.subject_line]
    assert mail.recipient == "sub1@x.org"
    # each finding carries its link, made for the digest's reader when it was sent
    assert f"/workspace/signals/{signal_of(finding).signal_id}" in mail.body_text


async def test_worse_grade_tells_again_and_shortens_the_deadline() -> None:
    clock = ManualClock()
    ctx = context(roster(), clock)
    store = store_for(ctx)
    envelope = raised("S2", grade=2)  # 72 h
    await plan(store, ctx, envelope)
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
    await plan(store, ctx, wrap(worse, source="/test/rules", time=clock.now()))
    assert recipients(store, "grade-3") == ["pi2"]
    assert "7.1 g/dL" in rendered(store, ctx, "grade-3").body_text
    clock.advance(hours=4)  # 5 h after raising: the grade-3 deadline (4 h) has passed
    assert await handlers.escalate_due(store, ctx) == 1


async def test_a_correction_to_a_worse_grade_tells_again_a_milder_one_does_not() -> None:
    clock = ManualClock()
    ctx = context(roster(), clock)
    store = store_for(ctx)
    envelope = raised("S2", grade=2)
    await plan(store, ctx, envelope)

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
    await plan(store, ctx, wrap(amended(2, "8.6"), source="/test/rules", time=clock.now()))
    assert recipients(store, "grade-2") == []  # the same grade: nothing new to tell
    await plan(store, ctx, wrap(amended(3, "7.4"), source="/test/rules", time=clock.now()))
    assert recipients(store, "grade-3") == ["pi2"]
    assert "7.4 g/dL" in rendered(store, ctx, "grade-3").body_text


async def test_the_link_reviews_the_signal_then_records_the_assessment() -> None:
    clock = ManualClock()
    ctx = context(roster(), clock)
    store = store_for(ctx)
    envelope = raised("S1", grade=3)
    await plan(store, ctx, envelope)
    signal = signal_of(envelope)
    token = token_planned_for(store, ctx, "pi1")
    seen = await handlers.review(store, signal.signal_id, token=token, context=ctx)
    assert seen.state.opened.subject_id == signal.subject_id
    assert (seen.person.id, seen.recorded, seen.closed) == ("pi1", None, None)
    with pytest.raises(InvalidLink):
        await handlers.review(store, signal.signal_id, token=f"x{token}", context=ctx)
    with pytest.raises(handlers.NotOnRoster):
        await acknowledge(store, ctx, signal.signal_id, mint(signal.signal_id, "pi2"))
    done = await acknowledge(store, ctx, signal.signal_id, token, comment="repeat Hb")
    assert done.new
    assert "acknowledged" in await stream_types(store, signal.signal_id)
    clock.advance(hours=5)  # past the grade-3 deadline: acknowledged, so no escalation
    assert await handlers.escalate_due(store, ctx) == 0
