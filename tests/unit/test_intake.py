"""Intake on the in-memory receipt store and publisher: kept before published, refused
messages kept, ownership judged, and the re-drive (the same ports as PostgreSQL and Kafka
pass one contract suite, tests/contract/)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.ingest.adapters.in_memory import InMemoryEventPublisher, InMemoryReceiptStore
from services.ingest.handlers.intake import Forbidden, Intake
from services.ingest.handlers.ports import BrokerUnavailable, Receipt, StorageUnavailable
from shared.events.dead_letters import ReceiptReference
from shared.events.topics import DEAD_LETTERS, LAB_RESULTS, SUBJECTS
from shared.supervision import Supervisor
from tests.support.intake import (
    LAB_A,
    LAB_B,
    OTHER_STUDY_LAB,
    enrolment,
    lab_result,
    owed,
    receipt,
)
from tests.support.notifier import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(clock: ManualClock) -> InMemoryReceiptStore:
    return InMemoryReceiptStore(redrive_after=timedelta(seconds=30), clock=clock)


@pytest.fixture
def publisher() -> InMemoryEventPublisher:
    return InMemoryEventPublisher()


@pytest.fixture
def intake(store: InMemoryReceiptStore, publisher: InMemoryEventPublisher) -> Intake:
    return Intake(store, publisher)


async def test_an_accepted_message_is_kept_with_its_events_then_published(
    intake: Intake, store: InMemoryReceiptStore, publisher: InMemoryEventPublisher
) -> None:
    event = lab_result()

    assert await intake.accept(receipt(), [event], principal=LAB_A) == []

    (kept,) = store.receipts
    assert kept.receipt.raw == receipt().raw
    assert kept.receipt.principal_source == "lab-a"
    assert kept.receipt.credential == "api-key:a"
    assert kept.event_ids == (event.id,)
    assert [record.event_id for record in publisher.topic(LAB_RESULTS)] == [event.id]


async def test_a_message_the_store_cannot_keep_is_not_published(
    intake: Intake, store: InMemoryReceiptStore, publisher: InMemoryEventPublisher
) -> None:
    store.available = False

    with pytest.raises(StorageUnavailable, match="cannot record the message durably"):
        await intake.accept(receipt(), [lab_result()], principal=LAB_A)

    assert publisher.published == []


async def test_a_message_kept_while_the_broker_is_away_is_redriven_when_it_is_back(
    intake: Intake,
    store: InMemoryReceiptStore,
    publisher: InMemoryEventPublisher,
    clock: ManualClock,
) -> None:
    event = lab_result()
    publisher.available = False

    with pytest.raises(BrokerUnavailable, match="cannot connect to Kafka"):
        await intake.accept(receipt(), [event], principal=LAB_A)

    assert [kept.event_ids for kept in store.receipts] == [(event.id,)]
    assert await intake.redrive() == 0  # not overdue yet
    clock.advance(seconds=31)
    with pytest.raises(BrokerUnavailable, match="cannot connect to Kafka"):
        await intake.redrive()  # still away: the claim is undone for the next round
    publisher.available = True
    assert await intake.redrive() == 1
    assert [record.event_id for record in publisher.published] == [event.id]


async def test_a_resent_message_is_kept_again_and_owes_its_events_once(
    intake: Intake, store: InMemoryReceiptStore, clock: ManualClock
) -> None:
    event = lab_result()

    await intake.accept(receipt(), [event], principal=LAB_A)
    await intake.accept(receipt(), [lab_result()], principal=LAB_A)

    assert [kept.event_ids for kept in store.receipts] == [(event.id,), (event.id,)]
    assert await store.unrecorded() == (1, 0.0)
    store.record_in_audit_log([event.id])
    assert await store.settle() == 1
    assert await store.unrecorded() == (0, None)


async def test_a_message_of_a_study_the_key_may_not_write_is_kept_refused_and_dead_lettered(
    intake: Intake, store: InMemoryReceiptStore, publisher: InMemoryEventPublisher
) -> None:
    with pytest.raises(Forbidden, match="forbidden-study") as refused:
        await intake.accept(receipt(), [lab_result()], principal=OTHER_STUDY_LAB)

    assert [r.code for r in refused.value.refusals] == ["forbidden-study"]
    (kept,) = store.receipts
    assert kept.receipt.outcome == "rejected"
    assert kept.receipt.principal_source == "lab-x"
    assert (kept.receipt.reason or "").startswith("403 1 event(s)")
    (letter,) = publisher.topic(DEAD_LETTERS)
    assert kept.event_ids == (letter.event_id,)
    assert ReceiptReference.model_validate_json(letter.value).receipt_id == kept.receipt_id
    assert publisher.topic(LAB_RESULTS) == []


async def test_a_refused_request_claims_nothing(
    intake: Intake, store: InMemoryReceiptStore
) -> None:
    await intake.accept(receipt(), [lab_result(value="8.4")], principal=LAB_A)
    correction = lab_result(value="8.5")  # the same record, another source

    with pytest.raises(Forbidden, match="forbidden-object"):
        await intake.accept(receipt(), [enrolment("01-009"), correction], principal=LAB_B)

    assert ("NCT05262686", "01-009") not in store.subject_owners
    assert set(store.record_owners.values()) == {"lab-a"}


async def test_a_partial_batch_accepts_what_is_allowed_and_returns_the_refusals(
    intake: Intake, publisher: InMemoryEventPublisher
) -> None:
    await intake.accept(receipt(), [lab_result(value="8.4")], principal=LAB_A)
    correction, new_subject = lab_result(value="8.5"), enrolment("01-009")

    refusals = await intake.accept(
        receipt(), [correction, new_subject], principal=LAB_B, partial=True
    )

    assert [(r.event_id, r.code) for r in refusals] == [(correction.id, "forbidden-object")]
    assert [record.event_id for record in publisher.topic(SUBJECTS)] == [new_subject.id]


async def test_a_rejected_message_is_kept_while_the_broker_is_away(
    intake: Intake, store: InMemoryReceiptStore, publisher: InMemoryEventPublisher
) -> None:
    publisher.available = False
    rejected = Receipt("mllp", "10.0.0.1", None, b"MSH|garbled", "rejected", "MSH-9 is missing")

    await intake.reject(rejected, "mllp://10.0.0.1", reason_code="unparseable")

    (kept,) = store.receipts
    assert kept.receipt.outcome == "rejected"
    assert store.owed(kept.event_ids[0]) is not None  # the re-drive sends its dead letter


async def test_a_redriven_record_the_broker_refuses_waits_alone(
    intake: Intake,
    store: InMemoryReceiptStore,
    publisher: InMemoryEventPublisher,
    clock: ManualClock,
) -> None:
    records = [owed(b'{"n": 1}'), owed(b"x" * 2_000_000), owed(b'{"n": 3}')]
    await store.record(receipt(), records)
    clock.advance(seconds=31)

    async with Supervisor("test-intake") as supervisor:
        assert await intake.redrive(supervisor.watch("redrive")) == 2
        (report,) = supervisor.report()

    assert [record.value for record in publisher.published] == [b'{"n": 1}', b'{"n": 3}']
    assert report["failing_items"][0]["item"] == f"event {records[1].event_id}"
    store.record_in_audit_log([records[0].event_id, records[2].event_id])
    clock.advance(seconds=61)
    assert await intake.redrive() == 0  # refused again, alone: the others are settled
    assert len(publisher.published) == 2
    assert await store.unrecorded() == (1, 92.0)
