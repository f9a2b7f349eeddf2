"""Found while breaking issue 16's ports from outside: behaviours in which an in-memory
implementation and the PostgreSQL one answer differently. Each test runs on both
implementations and asserts what a caller may rely on; where one of them fails, the two
are not one contract."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from services.notifier.handlers.ports import NotifierUnitOfWork
from shared.eventstore import EventStore, InMemoryEventStore, NewEvent, PostgresEventStore
from tests.contract.test_event_store_contract import result
from tests.contract.test_notifier_unit_of_work_contract import opened, planned


class EventStoreFindings:
    """Event store behaviour checked on each implementation (subclasses give ``store``)."""

    async def test_an_id_twice_in_one_batch_is_new_once(self, store: EventStore) -> None:
        # The port says an id already stored is a no-op reporting ``new`` False. The
        # second copy of an id in one batch is stored by the first: a caller counting what
        # a batch added (new=True) must not count it twice.
        event = result("A", n=1)
        appended = await store.append([NewEvent(event), NewEvent(event)])

        assert [(a.position, a.new) for a in appended] == [(1, True), (1, False)]
        assert len(await store.read_all()) == 1


class TestInMemoryEventStoreFindings(EventStoreFindings):
    @pytest.fixture
    def store(self, in_memory_event_store: InMemoryEventStore) -> EventStore:
        return in_memory_event_store


@pytest.mark.integration
class TestPostgresEventStoreFindings(EventStoreFindings):
    @pytest.fixture
    def store(self, postgres_event_store: PostgresEventStore) -> EventStore:
        return postgres_event_store


async def test_the_notifier_records_an_id_twice_in_one_batch_as_new_once(
    notifier_unit_of_work: NotifierUnitOfWork,
) -> None:
    uow, first = notifier_unit_of_work, opened()
    async with uow:
        appended = await uow.record([first, first])
    position = appended[0].position
    assert [(a.position, a.new) for a in appended] == [(position, True), (position, False)]


@pytest.mark.parametrize(
    "call",
    ["notification_events", "claim_due", "add_deliveries", "record"],
)
async def test_the_notifier_unit_of_work_refuses_work_outside_a_block(
    notifier_unit_of_work: NotifierUnitOfWork, call: str
) -> None:
    # PostgreSQL's unit of work on a pool has no connection outside ``async with``: a
    # handler that forgets its block fails in production. The in-memory one must fail it
    # too, or the handler's unit tests pass and production does not.
    uow, first = notifier_unit_of_work, opened()
    work = {
        "notification_events": lambda: uow.notification_events(first.signal_id),
        "claim_due": lambda: uow.claim_due(10, lease_seconds=60),
        "add_deliveries": lambda: uow.add_deliveries(
            [planned(first, "pi1")], give_up_after_seconds=60
        ),
        "record": lambda: uow.record([first]),
    }[call]
    with pytest.raises(RuntimeError, match="inside `async with`"):
        await work()


@pytest.mark.integration
async def test_the_same_events_get_the_same_rows_and_hashes_in_both_stores(
    postgres_event_store: PostgresEventStore, in_memory_event_store: InMemoryEventStore
) -> None:
    # The in-memory store says a row there has the hash the same row would have in
    # PostgreSQL: an audit tool tested on one must verify the other's log.
    at = datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=8)))
    events = [NewEvent(result("A", "8.25", n=1)), NewEvent(result("B", n=2))]
    late = [NewEvent(result("A", "7.5", n=3))]
    for store in (postgres_event_store, in_memory_event_store):
        await store.append(events, recorded_at=at)
        await store.append(late, recorded_at=at + timedelta(microseconds=1))

    in_postgres = await postgres_event_store.read_all()
    in_memory = await in_memory_event_store.read_all()
    assert in_memory == in_postgres
    assert await in_memory_event_store.head() == await postgres_event_store.head()
