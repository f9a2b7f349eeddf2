"""The contract of the notifier's unit of work, run against every implementation (in
memory and PostgreSQL): what the handlers rely on when they record, plan and claim."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.notifier.domain.deliveries import PlannedDelivery, compose
from services.notifier.domain.links import LinkClaims
from services.notifier.domain.messages import MessageContent
from services.notifier.domain.planning import AckDeadlines, open_notification
from services.notifier.handlers.ports import NotifierUnitOfWork
from shared.events import EventPayload, SafetySignalAmended, SafetySignalRaised
from shared.events.notifications import (
    NotificationOpened,
    NotificationReopened,
    NotificationWithdrawn,
    SignalAcknowledged,
)
from shared.eventstore import EventIdConflict
from tests.support.notifier import STUDY, T0, lifecycle, raised, roster, signal_of
from tests.support.signatures import signal_on_result

LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


class Boom(Exception):
    """Raised inside a block to roll it back."""


def opened() -> NotificationOpened:
    """A notification of a new signal at site S1, as the handlers open it."""
    event, _, _ = open_notification(
        signal_of(raised("S1")), raised_at=T0, roster=roster(), deadlines=AckDeadlines()
    )
    return event


def acknowledged(notification: NotificationOpened, link: str = "t-1") -> SignalAcknowledged:
    return SignalAcknowledged(
        study_id=notification.study_id,
        subject_id=notification.subject_id,
        signal_id=notification.signal_id,
        person_id="pi1",
        role="investigator",
        assessment="clinically-significant",
        comment="repeat Hb",
        token_id=link,
    )


def withdrawn(notification: NotificationOpened) -> NotificationWithdrawn:
    return NotificationWithdrawn(
        study_id=notification.study_id,
        subject_id=notification.subject_id,
        signal_id=notification.signal_id,
        reason="entered in error",
    )


def reopened(notification: NotificationOpened) -> NotificationReopened:
    return NotificationReopened(
        study_id=notification.study_id,
        subject_id=notification.subject_id,
        signal_id=notification.signal_id,
        reason="the result was corrected",
        acknowledge_by=T0 + timedelta(hours=4),
    )


def planned(
    notification: NotificationOpened, person: str, purpose: str = "raised"
) -> PlannedDelivery:
    claims = LinkClaims(
        key_id="k",
        signal_id=notification.signal_id,
        person_id=person,
        issued_at=T0,
        expires_at=T0 + timedelta(days=7),
        nonce=f"n-{person}",
    )
    return compose(
        MessageContent.model_validate(notification.message),
        purpose=purpose,
        person_id=person,
        channel="email",
        address=f"{person}@x.org",
        link=claims,
    )


def ids(events: list[EventPayload]) -> list[str]:
    return [type(event).__name__ for event in events]


# -- the notification log -------------------------------------------------------------------


async def test_recorded_events_are_read_back_in_order(
    notifier_unit_of_work: NotifierUnitOfWork,
) -> None:
    uow, first = notifier_unit_of_work, opened()
    async with uow:
        appended = await uow.record([first, acknowledged(first)])
    assert [a.new for a in appended] == [True, True]
    assert [a.stream_version for a in appended] == [1, 2]
    async with uow:
        events = await uow.notification_events(first.signal_id)
        assert await uow.notification_events(uuid.uuid4()) == []
    assert events == [first, acknowledged(first)]


async def test_an_event_recorded_again_is_a_no_op(
    notifier_unit_of_work: NotifierUnitOfWork,
) -> None:
    uow, first = notifier_unit_of_work, opened()
    event_id = uuid.uuid4()
    async with uow:
        (once,) = await uow.record([first], event_ids=[event_id])
    async with uow:
        (again,) = await uow.record([first], event_ids=[event_id])
        (in_one_batch, *_) = await uow.record([first, first], event_ids=[event_id, event_id])
        assert await uow.notification_events(first.signal_id) == [first]
        assert await uow.recorded(event_id)
        assert not await uow.recorded(uuid.uuid4())
    assert (once.new, again.new, in_one_batch.new) == (True, False, False)
    assert again.position == once.position


async def test_an_event_id_with_other_content_is_a_conflict_and_stores_nothing(
    notifier_unit_of_work: NotifierUnitOfWork,
) -> None:
    uow, first = notifier_unit_of_work, opened()
    event_id = uuid.uuid4()
    async with uow:
        await uow.record([acknowledged(first, "t-1")], event_ids=[event_id])
    with pytest.raises(EventIdConflict, match=str(event_id)):
        async with uow:
            await uow.record([first, acknowledged(first, "t-2")], event_ids=[None, event_id])
    async with uow:
        assert ids(await uow.notification_events(first.signal_id)) == ["SignalAcknowledged"]


async def test_an_acknowledgement_is_found_by_its_id_with_when_it_was_recorded(
    notifier_unit_of_work: NotifierUnitOfWork,
) -> None:
    uow, first = notifier_unit_of_work, opened()
    event_id, opened_id = uuid.uuid4(), uuid.uuid4()
    before = datetime.now(UTC) - timedelta(minutes=1)
    async with uow:
        await uow.record([first], event_ids=[opened_id])
        await uow.record([acknowledged(first)], event_ids=[event_id], time=T0)
    async with uow:
        found = await uow.acknowledgement(event_id)
        assert await uow.acknowledgement(opened_id) is None  # not an acknowledgement
        assert await uow.acknowledgement(uuid.uuid4()) is None
    assert found is not None
    event, recorded_at = found
    assert event == acknowledged(first)
    assert before < recorded_at < datetime.now(UTC) + timedelta(minutes=1)


async def test_the_record_of_an_event_carries_when_and_its_correlation_id(
    notifier_unit_of_work: NotifierUnitOfWork,
) -> None:
    uow, first = notifier_unit_of_work, opened()
    async with uow:
        (appended,) = await uow.record([first])
    async with uow:
        found = await uow.signal_record(appended.event_id)
        assert await uow.signal_record(uuid.uuid4()) is None
    assert found is not None
    assert found.correlation_id == str(appended.event_id)  # its own id: nothing caused it
    assert abs(found.recorded_at - datetime.now(UTC)) < timedelta(minutes=1)


async def test_open_timers_are_the_notifications_nobody_closed_since_the_last_turn(
    notifier_unit_of_work: NotifierUnitOfWork,
) -> None:
    uow = notifier_unit_of_work
    waiting, done, gone, back = opened(), opened(), opened(), opened()
    async with uow:
        await uow.lock_notifications([waiting.signal_id, done.signal_id])
        await uow.lock_notifications([waiting.signal_id])  # again in one transaction: at once
        await uow.record([waiting, done, gone, back])
        await uow.record([acknowledged(done), withdrawn(gone), acknowledged(back)])
        await uow.record([reopened(back)])
    async with uow:
        timers = await uow.open_timers()
    by_signal = {events[0].signal_id: ids(events) for events in timers}  # type: ignore[attr-defined]
    assert by_signal == {
        waiting.signal_id: ["NotificationOpened"],
        back.signal_id: ["NotificationOpened", "NotificationReopened"],
    }


# -- transactions ---------------------------------------------------------------------------


async def test_a_block_that_raises_leaves_nothing(
    notifier_unit_of_work: NotifierUnitOfWork,
) -> None:
    uow, first = notifier_unit_of_work, opened()

    async def write_then_fail() -> None:
        async with uow:
            await uow.record([first])
            await uow.add_deliveries([planned(first, "pi1")], give_up_after_seconds=60)
            await uow.hold_digest_items(STUDY, [("sub1", "line", None)], first.signal_id, T0)
            raise Boom

    with pytest.raises(Boom):
        await write_then_fail()
    async with uow:
        assert await uow.notification_events(first.signal_id) == []
        assert await uow.deliveries_of(first.signal_id) == []
        assert await uow.held_before(STUDY, datetime.now(UTC)) == []


async def test_a_nested_block_that_raises_undoes_only_its_own_work(
    notifier_unit_of_work: NotifierUnitOfWork,
) -> None:
    uow, first = notifier_unit_of_work, opened()

    async def two_assessments_under_one_id() -> None:
        async with uow:  # a savepoint
            await uow.record([acknowledged(first, "t-1")], event_ids=[first.signal_id])
            await uow.record([acknowledged(first, "t-2")], event_ids=[first.signal_id])

    async with uow:
        await uow.record([first])
        with pytest.raises(EventIdConflict, match="different content"):
            await two_assessments_under_one_id()
        await uow.add_deliveries([planned(first, "pi1")], give_up_after_seconds=60)
    async with uow:
        assert await uow.notification_events(first.signal_id) == [first]
        assert [d.person_id for d in await uow.deliveries_of(first.signal_id)] == ["pi1"]


# -- the deliveries outbox ------------------------------------------------------------------


async def test_a_delivery_is_planned_once_per_signal_purpose_channel_and_recipient(
    notifier_unit_of_work: NotifierUnitOfWork,
) -> None:
    uow, first = notifier_unit_of_work, opened()
    pi1, sub1 = planned(first, "pi1"), planned(first, "sub1")
    same_place = dataclasses.replace(pi1, delivery_id=uuid.uuid4())
    async with uow:
        added = await uow.add_deliveries([pi1, sub1], give_up_after_seconds=60)
        assert await uow.add_deliveries([pi1, same_place], give_up_after_seconds=60) == []
        escalation = planned(first, "pi1", "escalation-1")
        later = await uow.add_deliveries([escalation], give_up_after_seconds=60)
        stored = await uow.deliveries_of(first.signal_id)
    assert added == [pi1.delivery_id, sub1.delivery_id]
    assert len(later) == 1
    assert stored[:2] == [pi1, sub1]  # read back as planned: content, link claims and all
    assert [d.purpose for d in stored] == ["raised", "raised", "escalation-1"]


async def test_claiming_counts_the_attempt_and_leases_the_delivery(
    notifier_unit_of_work: NotifierUnitOfWork,
) -> None:
    uow, first = notifier_unit_of_work, opened()
    async with uow:
        await uow.add_deliveries([planned(first, "pi1")], give_up_after_seconds=3600)
    async with uow:
        claimed, unreadable = await uow.claim_due(10, lease_seconds=600)
    async with uow:
        assert await uow.claim_due(10, lease_seconds=600) == ([], [])  # leased
    (item,) = claimed
    assert unreadable == []
    assert (item.delivery, item.attempt) == (planned(first, "pi1"), 1)
    assert item.give_up_at is not None
    assert abs(item.give_up_at - (datetime.now(UTC) + timedelta(hours=1))) < timedelta(minutes=1)
    async with uow:
        await uow.mark_failed(item.delivery.delivery_id, "refused", LONG_AGO)
    async with uow:
        (again,), _ = await uow.claim_due(10, lease_seconds=600)
    assert again.attempt == 2


async def test_the_longest_due_is_claimed_first_and_no_more_than_asked(
    notifier_unit_of_work: NotifierUnitOfWork,
) -> None:
    uow, first = notifier_unit_of_work, opened()
    pi1, sub1, mm = planned(first, "pi1"), planned(first, "sub1"), planned(first, "mm")
    async with uow:
        await uow.add_deliveries([pi1, sub1, mm], give_up_after_seconds=3600)
        await uow.mark_failed(mm.delivery_id, "refused", LONG_AGO)
    async with uow:
        (oldest,), _ = await uow.claim_due(1, lease_seconds=600)
        rest, _ = await uow.claim_due(5, lease_seconds=600)
    assert oldest.delivery.person_id == "mm"
    assert sorted(c.delivery.person_id for c in rest) == ["pi1", "sub1"]


async def test_sent_abandoned_cancelled_and_later_deliveries_are_not_claimed(
    notifier_unit_of_work: NotifierUnitOfWork,
) -> None:
    uow, first, other = notifier_unit_of_work, opened(), opened()
    sent, abandoned, later = planned(first, "pi1"), planned(first, "sub1"), planned(first, "mm")
    async with uow:
        await uow.add_deliveries([sent, abandoned, later], give_up_after_seconds=3600)
        others = [planned(other, "pi1"), planned(other, "sub1")]
        await uow.add_deliveries(others, give_up_after_seconds=3600)
        await uow.mark_sent(sent.delivery_id)
        await uow.mark_failed(abandoned.delivery_id, "gave up", None)
        await uow.mark_failed(later.delivery_id, "refused", datetime.now(UTC) + timedelta(hours=1))
        assert await uow.cancel_pending(other.signal_id) == 2
        assert await uow.cancel_pending(first.signal_id) == 1  # only `later` was pending
    async with uow:
        assert await uow.claim_due(10, lease_seconds=600) == ([], [])


# -- the digest items -----------------------------------------------------------------------


async def test_held_items_wait_per_person_oldest_first_until_sent(
    notifier_unit_of_work: NotifierUnitOfWork,
) -> None:
    uow, first, second = notifier_unit_of_work, opened(), opened()
    claims = planned(first, "sub1").link
    async with uow:
        await uow.hold_digest_items(
            STUDY, [("sub1", "first", claims), ("mm", "first", None)], first.signal_id, T0
        )
        await uow.hold_digest_items(
            STUDY, [("sub1", "second", None)], second.signal_id, T0 - timedelta(hours=1)
        )
        await uow.hold_digest_items(STUDY, [("sub1", "again", None)], first.signal_id, T0)
        await uow.hold_digest_items(
            STUDY, [("sub1", "resolved", None)], first.signal_id, T0, item="resolved-1"
        )
        await uow.hold_digest_items(
            STUDY, [("sub1", "late", None)], second.signal_id, T0 + timedelta(seconds=1), item="x"
        )
        held = await uow.held_before(STUDY, T0 + timedelta(seconds=2))
        assert len(await uow.held_before(STUDY, T0 + timedelta(seconds=1))) == 2  # not "late"
        assert await uow.held_before(STUDY, T0 - timedelta(hours=1)) == []
        assert await uow.held_before("another study", T0 + timedelta(days=1)) == []
    mm, sub1 = held
    assert (mm.person_id, mm.lines, mm.links) == ("mm", ("first",), (None,))
    assert sub1.lines == ("second", "first", "resolved", "late")  # held again: unchanged
    assert sub1.items == ("raised", "raised", "resolved-1", "x")
    assert sub1.links == (None, claims, None, None)
    assert sub1.signal_ids == (second.signal_id, first.signal_id, first.signal_id, second.signal_id)

    async with uow:
        await uow.mark_digest_sent(sub1, T0.date())
        assert [h.person_id for h in await uow.held_before(STUDY, T0 + timedelta(days=1))] == ["mm"]
        assert await uow.digests_sent_to(first.signal_id) == {"sub1"}
        await uow.drop_digest_items(first.signal_id)  # withdrawn: the unsent ones go
        assert await uow.held_before(STUDY, T0 + timedelta(days=1)) == []
        assert await uow.digests_sent_to(first.signal_id) == {"sub1"}  # the sent ones stay


# -- what a signed assessment is bound to -------------------------------------------------


async def test_a_signals_events_are_read_from_its_raising_with_their_stored_hashes(
    notifier_unit_of_work: NotifierUnitOfWork,
) -> None:
    uow, facts, other = notifier_unit_of_work, signal_on_result(), signal_on_result()
    payload = facts.signal.payload()
    assert isinstance(payload, SafetySignalRaised)
    amended = SafetySignalAmended(
        **lifecycle(payload),
        reason="the result was corrected",
        previous_grade=None,
        grade=None,
        input_event_ids=(facts.result.id,),
        superseded_event_ids=(),
        computed_values={},
        collected_at=T0,
    )
    async with uow:
        for envelope in (*facts.envelopes, other.signal):
            await uow.record([envelope.payload()], event_ids=[envelope.id])
        await uow.record([amended])
    async with uow:
        events = await uow.signal_events(facts.signal_id)
        inputs = await uow.logged_facts([facts.result.id, uuid.uuid4(), facts.signal.id])
        assert await uow.signal_events(uuid.uuid4()) == []
        assert await uow.signal_events(facts.result.id) == []  # not a raised signal
    assert [type(e.payload).__name__ for e in events] == [
        "SafetySignalRaised",
        "SafetySignalAmended",
    ]
    assert events[0].event_id == facts.signal_id
    assert [f.event_id for f in inputs] == [facts.result.id, facts.signal.id]  # log order
    assert inputs[1].hash == events[0].hash  # one stored hash, whichever way it is read
    hashes = [f.hash for f in (*events, *inputs)]
    assert all(len(h) == 32 for h in hashes)
    assert len(set(hashes)) == 3


async def test_cancelling_the_escalations_leaves_the_other_deliveries_pending(
    notifier_unit_of_work: NotifierUnitOfWork,
) -> None:
    uow, first = notifier_unit_of_work, opened()
    async with uow:
        await uow.add_deliveries(
            [planned(first, "pi1"), planned(first, "mm", "escalation-1")],
            give_up_after_seconds=60,
        )
        assert await uow.cancel_pending(first.signal_id, purpose_prefix="escalation-") == 1
        assert await uow.cancel_pending(first.signal_id, purpose_prefix="escalation-") == 0
        claimed, _ = await uow.claim_due(10, lease_seconds=60)
    assert [c.delivery.person_id for c in claimed] == ["pi1"]
