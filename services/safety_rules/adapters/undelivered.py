"""Which protocol-threshold and serious signals nobody has been told about, read from the
audit log alone: not from the notifier, which may be the very component that is stuck.

A signal counts as told once its notification stream holds a successful delivery, an
acknowledgement or a signed assessment; a retracted signal needs telling no more. The log
is followed by position, so after the first read of the whole log each round reads only
what is new, plus the streams of the signals still waiting. ``PostgresWatchdogLog`` is the
watchdog's ``WatchdogLog`` port on PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg

from services.safety_rules.domain.undelivered import UndeliveredSignal
from shared.events import SafetySignalRaised, SafetySignalRetracted, subject_stream
from shared.events.notifications import (
    AssessmentSigned,
    DeliverySucceeded,
    SignalAcknowledged,
    notification_stream,
)
from shared.eventstore import EventStore, LoggedEvent, PostgresEventStore

# a signed assessment (the workspace's acknowledgement) is as good as a link's
_TOLD = [DeliverySucceeded.event_type, SignalAcknowledged.event_type, AssessmentSigned.event_type]


class UndeliveredSignals:
    """The raised protocol-threshold and serious signals not yet told, kept up to date
    from the log (reads of at most ``chunk`` positions at a time)."""

    def __init__(self, *, chunk: int = 50_000) -> None:
        self._chunk = chunk
        self._scanned = 0
        self._open: dict[uuid.UUID, UndeliveredSignal] = {}

    async def refresh(self, connection: asyncpg.Connection) -> list[UndeliveredSignal]:
        """Read what is new in the log; return the signals still waiting, oldest first."""
        return await self.refresh_from(PostgresEventStore(connection))

    async def refresh_from(self, store: EventStore) -> list[UndeliveredSignal]:
        """:meth:`refresh` on any event store."""
        head, _ = await store.head()
        while self._scanned < head:
            upto = min(self._scanned + self._chunk, head)
            raised = await store.read_types_between(
                [SafetySignalRaised.event_type], after=self._scanned, upto=upto
            )
            for event in filter(_needs_telling, raised):
                signal_id = uuid.UUID(event.payload["signal_id"])
                self._open[signal_id] = UndeliveredSignal(
                    signal_id,
                    event.study_id or "",
                    event.subject_id or "",
                    event.payload["rule_id"],
                    event.recorded_at,
                    event.position,
                )
            self._scanned = upto
        if self._open:
            for signal_id in await self._settled(store, list(self._open.values())):
                self._open.pop(signal_id, None)
        return sorted(self._open.values(), key=lambda signal: signal.position)

    async def _settled(
        self, store: EventStore, waiting: Sequence[UndeliveredSignal]
    ) -> set[uuid.UUID]:
        """The waiting signals someone was told about, or that were retracted."""
        by_stream = {notification_stream(s.signal_id): s.signal_id for s in waiting}
        told = await store.read_streams_of_types(by_stream, _TOLD)
        retracted = await store.read_streams_of_types(
            sorted({subject_stream(s.study_id, s.subject_id) for s in waiting}),
            [SafetySignalRetracted.event_type],
        )
        waiting_ids = {str(s.signal_id) for s in waiting}
        return {by_stream[event.stream_id] for event in told} | {
            uuid.UUID(event.payload["signal_id"])
            for event in retracted
            if event.payload.get("signal_id") in waiting_ids
        }


def _needs_telling(raised: LoggedEvent) -> bool:
    """Protocol-threshold and serious signals must reach someone; the others may wait."""
    payload = raised.payload
    return payload.get("severity") == "protocol-threshold" or payload.get("serious") is True


# advisory lock of the reporting step: one rules instance reports at a time
WATCHDOG_LOCK = 7_345_101


class PostgresWatchdogLog:
    """The watchdog's view of the audit log (:class:`UndeliveredSignals`) and its
    reporting turns, on a pool."""

    def __init__(self, pool: asyncpg.Pool, signals: UndeliveredSignals | None = None) -> None:
        self._pool = pool
        self._signals = signals if signals is not None else UndeliveredSignals()

    async def waiting(self) -> tuple[list[UndeliveredSignal], datetime]:
        """The signals still waiting, oldest first, and the database's time now."""
        async with self._pool.acquire() as connection:
            waiting = await self._signals.refresh(connection)
            now: datetime = await connection.fetchval("SELECT clock_timestamp()")
        return waiting, now

    @asynccontextmanager
    async def reporting(self) -> AsyncIterator[EventStore | None]:
        """A transaction holding the reporting lock (None: another instance holds it)."""
        async with self._pool.acquire() as connection, connection.transaction():
            if not await connection.fetchval("SELECT pg_try_advisory_xact_lock($1)", WATCHDOG_LOCK):
                yield None  # another instance is reporting
            else:
                yield PostgresEventStore(connection)
