"""Publishes committed outbox entries to Kafka, each until the broker acknowledged it."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime
from typing import TypeGuard

import asyncpg
import orjson
import structlog
from faststream.kafka import KafkaBroker

from services.safety_rules import metrics
from shared.background import DrainLoop
from shared.db.pool import DATABASE_ERRORS
from shared.events import CONTENT_TYPE
from shared.eventstore import PostgresEventStore
from shared.failures import BROKER_OUTAGES, failure_summary, is_outage
from shared.metrics import set_queue
from shared.supervision import Progress

log = structlog.get_logger(__name__)


def _failed(result: object) -> TypeGuard[BaseException]:
    return isinstance(result, BaseException)


# Signal event types by name, so the relay needs no payload classes to count them.
SIGNAL_RAISED = "org.vigil.safety_signal.raised.v1"
SIGNAL_ESCALATED = "org.vigil.safety_signal.escalated.v1"
SIGNAL_RESOLVED = "org.vigil.safety_signal.resolved.v1"
_SIGNAL = frozenset({SIGNAL_RAISED, SIGNAL_ESCALATED, SIGNAL_RESOLVED})


class OutboxRelay:
    """Moves outbox rows to Kafka; woken after each commit, and polls as a safety net.

    Rows are locked with SKIP LOCKED, so several rules instances share the work; a row
    is marked published only after the broker acknowledged it, so a crash in between
    republishes it (consumers drop the duplicate by event id). A row the broker refuses
    for itself (too large, say) is held back with growing back-off and reported, and the
    rows behind it go on; the backlog gauges keep showing it until it is published.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        broker: KafkaBroker,
        *,
        batch_size: int = 500,
        hold_max_seconds: float = 300.0,
    ) -> None:
        self._pool = pool
        self._broker = broker
        self._batch_size = batch_size
        self._hold_max = hold_max_seconds
        self._held: dict[uuid.UUID, tuple[float, int]] = {}  # until (monotonic), failures
        self._loop = DrainLoop("outbox", self.relay_once, retryable=BROKER_OUTAGES)

    def wake(self) -> None:
        """Tell the relay that new rows were committed."""
        self._loop.wake()

    async def run(self, progress: Progress) -> None:
        """Relay until cancelled, reporting each batch to ``progress``."""
        await self._loop.run(progress)

    def _hold(self, event_id: uuid.UUID, error: BaseException, progress: Progress | None) -> None:
        _, failures = self._held.get(event_id, (0.0, 0))
        delay = min(2.0**failures, self._hold_max)
        self._held[event_id] = (time.monotonic() + delay, failures + 1)
        log.error(
            "outbox.publish_refused",
            event_id=str(event_id),
            error=failure_summary(error),
            retry_in_seconds=delay,
        )
        if progress is not None:
            progress.item_failed(f"outbox {event_id}", error)

    def _holding(self) -> list[uuid.UUID]:
        now = time.monotonic()
        return [event_id for event_id, (until, _) in self._held.items() if until > now]

    async def relay_once(self, progress: Progress | None = None) -> int:
        """Publish one batch of pending rows; returns how many were published."""
        async with self._pool.acquire() as connection, connection.transaction():
            rows = await self._lock_pending(connection)
            if not rows:
                return 0
            results = await asyncio.gather(
                *(
                    self._broker.publish(
                        bytes(row["value"]),
                        topic=row["topic"],
                        key=bytes(row["key"]),
                        headers={"content-type": CONTENT_TYPE},
                    )
                    for row in rows
                ),
                return_exceptions=True,
            )
            published = [
                row for row, result in zip(rows, results, strict=True) if not _failed(result)
            ]
            outages = [result for result in results if _failed(result) and is_outage(result)]
            if outages and not published:
                raise outages[0]  # the broker is away: the step is retried with back-off
            await connection.execute(
                "UPDATE outbox SET published_at = clock_timestamp() WHERE event_id = ANY($1)",
                [row["event_id"] for row in published],
            )
        for row, result in zip(rows, results, strict=True):
            if _failed(result) and not is_outage(result):
                self._hold(row["event_id"], result, progress)
            elif not _failed(result):
                self._held.pop(row["event_id"], None)
                if progress is not None:
                    progress.item_succeeded(f"outbox {row['event_id']}")
        log.info("outbox.published", count=len(published))
        await self._observe_signals([bytes(row["value"]) for row in published])
        return len(published)

    async def _lock_pending(self, connection: asyncpg.Connection) -> list[asyncpg.Record]:
        """The next batch of pending rows, locked, oldest first. Rows can share a timestamp
        (a batch's, often): the audit log's order breaks the tie, so the rest of the last
        timestamp's rows are locked too, to choose among them (those not chosen are left
        for the next round, unlocked at commit)."""
        pending = """SELECT event_id, topic, key, value, created_at FROM outbox
                     WHERE published_at IS NULL AND event_id <> ALL($1::uuid[])"""
        holding = self._holding()
        rows = list(
            await connection.fetch(
                f"{pending} ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED",
                holding,
                self._batch_size,
            )
        )
        if len(rows) == self._batch_size:
            rows += await connection.fetch(
                f"{pending} AND created_at = $2 AND event_id <> ALL($3::uuid[]) "
                "FOR UPDATE SKIP LOCKED",
                holding,
                rows[-1]["created_at"],
                [row["event_id"] for row in rows],
            )
        positions = await PostgresEventStore(connection).positions_of(
            row["event_id"] for row in rows
        )
        rows.sort(key=lambda row: (row["created_at"], positions.get(row["event_id"], 0)))
        return rows[: self._batch_size]

    async def sample_backlog(self) -> None:
        """Update the backlog gauges: how many entries wait, and for how long."""
        row = await self._pool.fetchrow(
            """SELECT count(*) AS n,
                      extract(epoch FROM clock_timestamp() - min(created_at))::float8 AS age
               FROM outbox WHERE published_at IS NULL"""
        )
        set_queue(metrics.OUTBOX_BACKLOG, metrics.OUTBOX_OLDEST_AGE, row["n"], row["age"])

    async def _observe_signals(self, values: list[bytes]) -> None:
        """Count the signal events just published, once each (the rows are now marked).

        Counted here rather than in the handler so that a batch rolled back and retried
        counts nothing twice, and latency runs to the moment the signal left the service.
        """
        signals = [event for value in values if (event := orjson.loads(value))["type"] in _SIGNAL]
        if not signals:
            return
        raised = [e for e in signals if e["type"] == SIGNAL_RAISED and e.get("causationid")]
        received: dict[str, datetime] = {}
        try:
            causes = await PostgresEventStore(self._pool).read_events(
                uuid.UUID(e["causationid"]) for e in raised
            )
            received = {
                str(cause.event_id): datetime.fromisoformat(cause.envelope["time"])
                for cause in causes
                if cause.envelope.get("time")
            }
        except DATABASE_ERRORS as error:
            # the signals still count; only their receipt-to-signal latency is lost
            log.warning("outbox.receipt_times_unavailable", error=repr(error))
        for event in signals:
            data = event.get("data", {})
            rule, grade = data.get("rule_id", "unknown"), data.get("grade")
            if event["type"] == SIGNAL_RAISED:
                metrics.record_signal(
                    rule,
                    grade,
                    datetime.fromisoformat(data["collected_at"]),
                    received.get(event.get("causationid") or ""),
                )
            elif event["type"] == SIGNAL_ESCALATED:
                metrics.record_escalation(rule, grade)
            else:
                metrics.record_resolution(rule, grade)
