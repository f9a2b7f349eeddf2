"""Publishes committed outbox entries to Kafka, each until the broker acknowledged it."""

from __future__ import annotations

import asyncio

import asyncpg
import structlog
from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker

from shared.background import DrainLoop
from shared.events import CONTENT_TYPE

log = structlog.get_logger(__name__)


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
                   ORDER BY created_at
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
        return len(rows)
