"""The contract of the watchdog's view of the audit log (``WatchdogLog``), run against
PostgreSQL's (``services.safety_rules.adapters.undelivered``) and the in-memory one
(``services.safety_rules.adapters.in_memory``): which signals wait, the log's time, and
reporting turns that keep what they record and that one instance at a time gets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import pytest

from services.safety_rules.adapters.in_memory import InMemoryWatchdogLog
from services.safety_rules.adapters.undelivered import PostgresWatchdogLog
from services.safety_rules.handlers.ports import WatchdogLog
from shared.db.pool import create_pool
from shared.events import Envelope, SafetySignalRetracted, wrap
from shared.events.operations import UndeliveredSignalReported, watchdog_stream
from shared.eventstore import InMemoryEventStore, NewEvent, PostgresEventStore
from tests.support.notifier import ManualClock, lifecycle, raised, signal_of


@dataclass
class Log:
    """A WatchdogLog, and how a test puts events in the audit log it reads."""

    audit_log: WatchdogLog
    put: Callable[[Sequence[Envelope]], Awaitable[None]]


@pytest.fixture
async def log(database: str | None) -> AsyncIterator[Log]:
    """The watchdog's log, once per implementation, on an empty audit log."""
    if database is None:
        clock = ManualClock()
        store = InMemoryEventStore(clock)

        async def put_in_memory(envelopes: Sequence[Envelope]) -> None:
            await store.append([NewEvent(envelope) for envelope in envelopes])

        yield Log(InMemoryWatchdogLog(store, clock), put_in_memory)
        return
    pool = await create_pool(database)

    async def put_in_postgres(envelopes: Sequence[Envelope]) -> None:
        async with pool.acquire() as connection, connection.transaction():
            await PostgresEventStore(connection).append([NewEvent(e) for e in envelopes])

    try:
        yield Log(PostgresWatchdogLog(pool), put_in_postgres)
    finally:
        await pool.close()


async def test_the_urgent_signals_nobody_was_told_about_wait_oldest_first(log: Log) -> None:
    first, finding, retracted_one, second = (
        raised(), raised(severity="finding"), raised(), raised(severity="finding", serious=True)
    )  # fmt: skip
    retraction = wrap(
        SafetySignalRetracted(**lifecycle(signal_of(retracted_one)), reason="withdrawn"),
        source="/test/rules",
    )
    await log.put([first, finding, retracted_one, second, retraction])

    waiting, now = await log.audit_log.waiting()

    assert [s.signal_id for s in waiting] == [
        signal_of(first).signal_id,
        signal_of(second).signal_id,
    ]
    assert now.tzinfo is not None
    assert all(now >= s.recorded_at for s in waiting)


async def test_what_a_reporting_turn_records_is_kept(log: Log) -> None:
    signal = raised()
    await log.put([signal])
    [waiting], _ = await log.audit_log.waiting()
    report = UndeliveredSignalReported(
        study_id=waiting.study_id,
        subject_id=waiting.subject_id,
        signal_id=waiting.signal_id,
        rule_id=waiting.rule_id,
        signal_recorded_at=waiting.recorded_at,
        deadline_seconds=600.0,
        channels=("email",),
    )

    async with log.audit_log.reporting() as store:
        assert store is not None
        await store.append([NewEvent(wrap(report, source="/test/watchdog"))])

    stream = watchdog_stream(waiting.signal_id)
    async with log.audit_log.reporting() as store:
        assert store is not None
        assert await store.existing_streams([stream]) == {stream}


async def test_one_reporting_turn_at_a_time(log: Log) -> None:
    async with log.audit_log.reporting() as first, log.audit_log.reporting() as second:
        assert first is not None
        assert second is None
    async with log.audit_log.reporting() as again:
        assert again is not None
