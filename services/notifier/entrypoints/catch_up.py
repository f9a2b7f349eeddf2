"""The notifier's catch-up: every signal event in the audit log is answered, whether or
not Kafka delivered it.

Kafka is the fast path; it is not trusted to be the only copy (the development broker
forgets everything when it restarts, a consumer group's offsets can be lost, a relay can
mark a signal published just before the broker goes). The audit log in PostgreSQL is the
system of record, so this task follows it: each round reads the signal and data-quality
events after its checkpoint, in position order, and gives each to the same handlers the
Kafka consumer uses. Those are idempotent (an event answered before changes nothing), so
the catch-up never doubles what the fast path did; it only fills what the fast path
missed.

- **Grace period.** An event younger than ``grace_seconds`` is left for the fast path: the
  round stops before it and the checkpoint waits there (it never passes an event it has
  not handled).
- **Several instances.** The checkpoint row is locked for the round (SKIP LOCKED): one
  instance reads, the others skip.
- **One transaction per round**, each event in a savepoint: the answers and the moved
  checkpoint commit together. An event the handlers cannot handle (not an outage) is
  rolled back alone, recorded in the audit log as a projection's skipped event is
  (``ProjectionEventSkipped`` in the stream ``projection-notifier.catch-up``), reported to
  the supervisor, and passed.
- **Cost.** A partial index holds only these event types (migration 0011), so a round
  reads what is new and nothing else.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Sequence

import asyncpg
import structlog

from services.notifier import handlers, metrics
from services.notifier.adapters import signal_log
from services.notifier.adapters.postgres import PostgresNotifierUnitOfWork
from services.notifier.adapters.signal_log import LoggedCause
from shared.background import DrainLoop
from shared.events import Envelope
from shared.failures import OUTAGES, is_outage
from shared.projections import record_skipped
from shared.supervision import Progress

log = structlog.get_logger(__name__)


def _readable(causes: Sequence[LoggedCause]) -> list[Envelope]:
    """The envelopes that can be read back (one that cannot fails alone when answered)."""
    envelopes = []
    for cause in causes:
        with contextlib.suppress(ValueError):  # pydantic's ValidationError is a ValueError
            envelopes.append(cause.envelope())
    return envelopes


class SignalCatchUp:
    """Answers the signal events of the audit log that the fast path has not answered."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        context: handlers.NotifierContext,
        *,
        grace_seconds: float,
        poll_seconds: float,
        batch_size: int = 50,
        on_planned: Callable[[], None] = lambda: None,
    ) -> None:
        self._pool = pool
        self._context = context
        self._grace = grace_seconds
        self._batch_size = batch_size
        self._on_planned = on_planned
        self._loop = DrainLoop(
            "notifier.catch_up", self.step, retryable=OUTAGES, poll_seconds=poll_seconds
        )

    async def run(self, progress: Progress) -> None:
        """Follow the log until cancelled, reporting each round to ``progress``."""
        await self._loop.run(progress)

    async def step(self, progress: Progress | None = None) -> int:
        """One round: returns how many signal events it read (0: nothing due, or another
        instance holds the checkpoint)."""
        async with self._pool.acquire() as connection, connection.transaction():
            start = await signal_log.lock_checkpoint(connection)
            if start is None:
                return 0
            head = await signal_log.log_head(connection)
            if head <= start:
                return 0
            causes = await signal_log.read_causes(
                connection,
                after=start,
                upto=head,
                limit=self._batch_size,
                grace_seconds=self._grace,
            )
            due = list(itertools.takewhile(lambda cause: cause.due, causes))
            if len(due) < len(causes):
                reached = causes[len(due)].position - 1  # the rest is left to the fast path
            elif len(causes) < self._batch_size:
                reached = head  # every cause up to the head is read: the rest is not one
            else:
                reached = causes[-1].position
            # the handlers work in this round's transaction, each event in a savepoint
            uow = PostgresNotifierUnitOfWork(connection)
            # before anything is appended: the order every handler takes its locks in
            await handlers.hold_notifications(uow, _readable(due))
            added = 0
            for cause in due:
                added += await self._answer(connection, uow, cause, progress)
            read = len(due)
            await signal_log.advance(connection, reached)
        if added:
            metrics.CATCH_UP_DELIVERIES.inc(added)
            log.warning(
                "notifier.caught_up",
                events=read,
                deliveries_added=added,
                checkpoint=reached,
                note="signal events the Kafka fast path had not answered",
            )
            self._on_planned()
        return read

    async def _answer(
        self,
        connection: asyncpg.Connection,
        uow: PostgresNotifierUnitOfWork,
        cause: LoggedCause,
        progress: Progress | None,
    ) -> int:
        """Hand one event to the handlers in a savepoint; returns deliveries added."""
        item = f"event {cause.position}"
        try:
            # handle_signals enters ``uow``: a savepoint in this round's transaction, so
            # an event fails alone (an envelope that cannot be read fails before it)
            added = await handlers.handle_signals(uow, [cause.envelope()], self._context)
        except Exception as error:
            if is_outage(error):
                raise
            await record_skipped(
                connection,
                signal_log.CHECKPOINT,
                cause.position,
                cause.event_id,
                cause.type,
                error,
                progress,
            )
            return 0
        if progress is not None:
            progress.item_succeeded(item)
        return added


async def sample_behind(pool: asyncpg.Pool) -> None:
    """Set the catch-up's gauges: how many signal events it has not read, and the age of
    the oldest."""
    async with pool.acquire() as connection:
        behind = await signal_log.behind(connection)
    metrics.CATCH_UP_PENDING_EVENTS.set(behind.events)
    metrics.CATCH_UP_BEHIND_SECONDS.set(behind.oldest_age_seconds or 0.0)
