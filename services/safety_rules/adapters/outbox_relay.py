"""Publishes committed outbox entries to Kafka, each until the broker acknowledged it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

import asyncpg
import orjson
import structlog
from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker

from shared import metrics
from shared.background import DrainLoop
from shared.events import CONTENT_TYPE

log = structlog.get_logger(__name__)
# Signal event types by name, so the relay needs no payload classes to count them.
SIGNAL_RAISED = "org.vigil.safety_signal.raised.v1"
SIGNAL_ESCALATED = "org.vigil.safety_signal.escalated.v1"
SIGNAL_RESOLVED = "org.vigil.safety_signal.resolved.v1"
_SIGNAL = frozenset({SIGNAL_RAISED, SIGNAL_ESCALATED, SIGNAL_RESOLVED})


class OutboxRelay:
    """Moves outbox rows to Kafka; woken after each commit, and polls as a safety net.

    Rows are locked with SKIP LOCKED, so several rules instances share the work; a row
    is marked published only after the broker acknowledged it, so a crash in between
    republishes it (consumers drop the duplicate by event id).
    """

    def __init__(self, pool: asyncpg.Pool, broker: KafkaBroker, *, batch_size: int = 500) -> None:
        self._pool = pool
        self._broker = broker
        self._batch_size = batch_size
        self._loop = DrainLoop(
            "outbox",
            self.relay_once,
            retryable=(KafkaError, OSError, asyncpg.PostgresError, TimeoutError),
        )

    def wake(self) -> None:
        """Tell the relay that new rows were committed."""
        self._loop.wake()

    async def run(self) -> None:
        """Relay until cancelled."""
        await self._loop.run()

    async def relay_once(self) -> int:
        """Publish one batch of pending rows; returns how many."""
        async with self._pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(
                """SELECT event_id, topic, key, value FROM outbox
                   WHERE published_at IS NULL
                   -- a batch's rows can share a timestamp: the audit log's order breaks ties
                   ORDER BY created_at,
                            (SELECT position FROM events e WHERE e.event_id = outbox.event_id)
                   LIMIT $1
                   FOR UPDATE SKIP LOCKED""",
                self._batch_size,
            )
            if not rows:
                return 0
            await asyncio.gather(
                *(
                    self._broker.publish(
                        bytes(row["value"]),
                        topic=row["topic"],
                        key=bytes(row["key"]),
                        headers={"content-type": CONTENT_TYPE},
                    )
                    for row in rows
                )
            )
            await connection.execute(
                "UPDATE outbox SET published_at = clock_timestamp() WHERE event_id = ANY($1)",
                [row["event_id"] for row in rows],
            )
        log.info("outbox.published", count=len(rows))
        await self._observe_signals([bytes(row["value"]) for row in rows])
        return len(rows)

    async def sample_backlog(self) -> None:
        """Update the backlog gauges: how many entries wait, and for how long."""
        row = await self._pool.fetchrow(
            """SELECT count(*) AS n,
                      extract(epoch FROM clock_timestamp() - min(created_at))::float8 AS age
               FROM outbox WHERE published_at IS NULL"""
        )
        metrics.set_queue(metrics.OUTBOX_BACKLOG, metrics.OUTBOX_OLDEST_AGE, row["n"], row["age"])

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
            rows = await self._pool.fetch(
                "SELECT event_id::text AS id, envelope->>'time' AS time FROM events "
                "WHERE event_id = ANY($1::uuid[])",
                [uuid.UUID(e["causationid"]) for e in raised],
            )
            received = {r["id"]: datetime.fromisoformat(r["time"]) for r in rows if r["time"]}
        except (asyncpg.PostgresError, OSError) as error:
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
