"""Projections: read models fed from the event store, each with its own checkpoint.

A projection can always be dropped and rebuilt from position zero; the rebuilt state must
equal the live one, which is what makes the event store the only source of truth.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import asyncpg
import structlog

from shared import metrics
from shared.clock import Clock, SystemClock
from shared.events import wrap
from shared.events.operations import ProjectionEventSkipped, ProjectionRebuilt, projection_stream
from shared.eventstore import (
    NewEvent,
    PayloadEvent,
    PostgresEventStore,
    append,
    read_payloads,
)
from shared.eventstore.postgres_append import APPEND_LOCK
from shared.failures import failure_summary, failure_traceback, is_outage

if TYPE_CHECKING:
    from shared.supervision import Progress

log = structlog.get_logger(__name__)
SOURCE = "/vigil/projections"


async def hold_append_lock(connection: asyncpg.Connection) -> None:
    """Take the event store's append lock for the transaction (appends re-enter it)."""
    await connection.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)


class Projection(Protocol):
    """A read model: ``apply`` runs inside the runner's transaction."""

    name: str

    async def reset(self, connection: asyncpg.Connection) -> None: ...

    async def apply(
        self, connection: asyncpg.Connection, events: Sequence[PayloadEvent]
    ) -> None: ...


async def record_skipped(
    connection: asyncpg.Connection,
    follower: str,
    position: int,
    event_id: uuid.UUID,
    event_type: str,
    error: Exception,
    progress: Progress | None,
    clock: Clock | None = None,
) -> None:
    """Record in the audit log that a log follower (a projection, the notifier's
    catch-up) went on without one event: ``ProjectionEventSkipped`` in the stream
    ``projection-{follower}`` at ``clock``'s time, with the error's type and place (never
    its text), a log line with the traceback, and a failed item for the supervisor."""
    reason = failure_summary(error)
    log.error(
        "projection.event_skipped",
        projection=follower,
        position=position,
        event_type=event_type,
        reason=reason,
        traceback=failure_traceback(error),
    )
    skipped = ProjectionEventSkipped(
        projection=follower,
        position=position,
        skipped_event_id=event_id,
        skipped_type=event_type,
        reason=reason,
    )
    when = (clock or SystemClock()).now()
    await append(connection, [NewEvent(wrap(skipped, source=SOURCE, time=when))])
    if progress is not None:
        progress.item_failed(f"event {position}", reason)


class ProjectionRunner:
    """Feeds one projection in batches; the checkpoint moves in the same transaction.

    The checkpoint row is locked while a batch is applied, so several service instances
    can run the same projection: one applies, the others skip that round.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        projection: Projection,
        *,
        batch_size: int = 1000,
        clock: Clock | None = None,
    ) -> None:
        self._pool = pool
        self._projection = projection
        self._batch_size = batch_size
        self._clock = clock or SystemClock()

    @property
    def name(self) -> str:
        return self._projection.name

    async def _lock_checkpoint(self, connection: asyncpg.Connection, *, wait: bool) -> int | None:
        await connection.execute(
            "INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING",
            self.name,
        )
        skip = "" if wait else " SKIP LOCKED"
        position: int | None = await connection.fetchval(
            f"SELECT position FROM projection_checkpoints WHERE name = $1 FOR UPDATE{skip}",
            self.name,
        )
        return position

    async def _advance(self, connection: asyncpg.Connection, position: int) -> None:
        await connection.execute(
            "UPDATE projection_checkpoints SET position = $2, updated_at = clock_timestamp() "
            "WHERE name = $1",
            self.name,
            position,
        )

    async def _apply_next(
        self,
        connection: asyncpg.Connection,
        *,
        wait: bool,
        limit: int,
        isolate: bool,
        progress: Progress | None = None,
    ) -> int:
        position = await self._lock_checkpoint(connection, wait=wait)
        if position is None:
            return 0  # another instance is applying right now
        events = await read_payloads(connection, after_position=position, limit=limit)
        if not events:
            return 0
        await self._apply(connection, events, isolate=isolate, progress=progress)
        await self._advance(connection, events[-1].position)
        return len(events)

    async def _apply(
        self,
        connection: asyncpg.Connection,
        events: Sequence[PayloadEvent],
        *,
        isolate: bool,
        progress: Progress | None,
    ) -> int:
        """Apply a batch; when it fails (not an outage) and ``isolate``, apply its events
        one by one and skip, recording each, the ones that fail alone. The caller holds
        the append lock then. Returns how many events were skipped."""
        try:
            async with connection.transaction():  # a savepoint: a failed batch leaves nothing
                await self._projection.apply(connection, events)
            return 0
        except Exception as error:
            if is_outage(error):
                raise
            if not isolate:
                raise _BatchFailed from error
        skipped = 0
        for event in events:
            try:
                async with connection.transaction():
                    await self._projection.apply(connection, [event])
            except Exception as error:
                if is_outage(error):
                    raise
                await self._skip(connection, event, error, progress)
                skipped += 1
        return skipped

    async def _skip(
        self,
        connection: asyncpg.Connection,
        event: PayloadEvent,
        error: Exception,
        progress: Progress | None,
    ) -> None:
        await record_skipped(
            connection,
            self.name,
            event.position,
            event.event_id,
            event.type,
            error,
            progress,
            self._clock,
        )

    async def step(self, progress: Progress | None = None) -> int:
        """Apply the next batch; returns how many events it applied (0: caught up or busy).

        An event the projection cannot apply is skipped and recorded (see
        :meth:`skipped`), so one bad event never stops the read model."""
        try:
            async with self._pool.acquire() as connection, connection.transaction():
                return await self._apply_next(
                    connection, wait=False, limit=self._batch_size, isolate=False
                )
        except _BatchFailed:
            pass
        async with self._pool.acquire() as connection, connection.transaction():
            # recording a skip appends: take the append lock before the checkpoint, the
            # order every appender that moves the projection takes them in
            await hold_append_lock(connection)
            return await self._apply_next(
                connection, wait=True, limit=self._batch_size, isolate=True, progress=progress
            )

    async def catch_up_in(self, connection: asyncpg.Connection, *, limit: int = 5000) -> int:
        """Apply what is new inside the caller's transaction (a writer keeping its read model
        in step with what it just appended, so it holds the append lock); at most ``limit``
        events, the rest is left to :meth:`step`. Waits for another instance's round to
        end rather than skip."""
        return await self._apply_next(connection, wait=True, limit=limit, isolate=True)

    async def catch_up(self) -> int:
        """Apply everything there is now; returns how many events."""
        total = 0
        while applied := await self.step():
            total += applied
        return total

    async def position(self) -> int:
        value = await self._pool.fetchval(
            "SELECT position FROM projection_checkpoints WHERE name = $1", self.name
        )
        return int(value or 0)

    async def skipped(self) -> int:
        """How many events the read model is missing: skipped since its last rebuild (the
        rebuild's own skips included). Not 0: fix the cause, then `vigil replay`."""
        stream = projection_stream(self.name)
        # one snapshot for both reads, so a rebuild committing between them is not half seen
        async with (
            self._pool.acquire() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            store = PostgresEventStore(connection)
            rebuilt = await store.last_of_type(stream, ProjectionRebuilt.event_type)
            since = rebuilt.stream_version if rebuilt is not None else 0
            count = await store.count_of_type(
                stream, ProjectionEventSkipped.event_type, after_version=since
            )
        return count + (int(rebuilt.payload.get("skipped") or 0) if rebuilt is not None else 0)

    async def sample_skipped(self) -> None:
        """Set ``vigil_projection_skipped_events`` for this projection."""
        metrics.PROJECTION_SKIPPED_EVENTS.labels(self.name).set(await self.skipped())

    async def divergence(self) -> str | None:
        """For readiness: why the read model differs from the log, or None."""
        skipped = await self.skipped()
        if not skipped:
            return None
        return (
            f"projection {self.name} skipped {skipped} event(s) it could not apply (see "
            f"the {projection_stream(self.name)} stream and the projection.event_skipped "
            f"log lines); fix the cause, then run `vigil replay {self.name}`"
        )

    async def rebuild(self) -> int:
        """Drop the read model and replay the whole log into it, in one transaction, so
        readers see the old state until the new one is complete. Events it cannot apply
        are skipped and recorded; the rebuild itself is recorded last."""
        async with self._pool.acquire() as connection, connection.transaction():
            await hold_append_lock(connection)  # before the checkpoint, as every appender
            await self._lock_checkpoint(connection, wait=True)
            await self._projection.reset(connection)
            position, total, skipped = 0, 0, 0
            while events := await read_payloads(
                connection, after_position=position, limit=self._batch_size
            ):
                skipped += await self._apply(connection, events, isolate=True, progress=None)
                position = events[-1].position
                total += len(events)
            await self._advance(connection, position)
            rebuilt = ProjectionRebuilt(
                projection=self.name, rebuild_id=uuid.uuid4(), skipped=skipped
            )
            when = self._clock.now()
            await append(connection, [NewEvent(wrap(rebuilt, source=SOURCE, time=when))])
            return total


class _BatchFailed(Exception):
    """A batch failed and the projection's transaction must be rolled back before its
    events are tried one by one (under the append lock)."""
