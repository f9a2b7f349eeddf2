"""Where the rules service's consumer starts: the positions stored with the data."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import asyncpg
import structlog
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from shared.owed_events import owed_events_due_now

log = structlog.get_logger(__name__)
# Placing the partitions is best effort: whatever the database or the broker answers
# (any PostgreSQL error, not only an outage), the consumer starts from Kafka's committed
# offsets rather than fail the rebalance.
RETRYABLE = (asyncpg.PostgresError, OSError, KafkaError, TimeoutError)


class SeekToStoredPositions(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, continue from the positions the database recorded with the data.

    Kafka's committed offsets are only a hint: they are committed after the database
    commit, so they can lag (a crash in between) or be lost (a broker that forgot them).
    A stored position beyond the partition's end means the broker lost the log itself (a
    memory-only development broker restarted); the consumer then reads what the broker
    has, and the event store drops what it already holds, and every event ingest still
    owes the audit log is made due for re-publishing at once (what the broker held of
    them is gone; see shared/owed_events.py).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        group_id: str,
        *,
        settle: Callable[[], Awaitable[None]] | None = None,
        forget: Callable[[Iterable[tuple[str, int]]], None] | None = None,
    ) -> None:
        self._pool = pool
        self._group_id = group_id
        # the consumer's batch under way is stored (or failed) before partitions are given
        # up, so whoever takes them starts from what it stored; a rewind owed on a
        # partition is forgotten when it is placed again
        self._settle = settle
        self._forget = forget
        self.subscriber: Any = None  # the FastStream subscriber, set once it exists

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if self._settle is not None:
            await self._settle()
        if self._forget is not None:
            self._forget((tp.topic, tp.partition) for tp in revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if self._forget is not None:
            self._forget((tp.topic, tp.partition) for tp in assigned)
        consumer = getattr(self.subscriber, "consumer", None)
        if consumer is None or not assigned:
            return
        # the fetcher starts at Kafka's committed (or the earliest) offset as soon as the
        # partitions are assigned; held until they are placed, no record from there reaches
        # the handler first (and moves the stored position back)
        consumer.pause(*assigned)
        try:
            await self._place(consumer, assigned)
        finally:
            consumer.resume(*assigned)

    async def _place(self, consumer: Any, assigned: set[TopicPartition]) -> None:
        try:
            rows = await self._pool.fetch(
                "SELECT topic, partition, next_offset FROM consumer_positions WHERE group_id = $1",
                self._group_id,
            )
            ends = await consumer.end_offsets(list(assigned))
        except RETRYABLE as error:
            log.warning("rules.stored_positions_unavailable", error=repr(error))
            return  # Kafka's committed offsets then; what was stored is dropped as a repeat
        stored = {(row["topic"], row["partition"]): row["next_offset"] for row in rows}
        lost = False
        for partition in sorted(assigned):
            position = stored.get((partition.topic, partition.partition))
            if position is None:
                continue
            end = ends.get(partition)
            if end is not None and position > end:
                log.warning(
                    "rules.partition_log_lost",
                    topic=partition.topic,
                    partition=partition.partition,
                    stored=position,
                    end=end,
                )
                # one past the end is how the development broker answers a partition it
                # kept whole at times; a real loss leaves the end well behind
                lost = lost or position > end + 1
                continue
            consumer.seek(partition, position)
        if lost:
            await self._redrive_owed()

    async def _redrive_owed(self) -> None:
        try:
            moved = await owed_events_due_now(self._pool)
        except RETRYABLE as error:
            log.warning("rules.owed_events_not_brought_forward", error=repr(error))
            return  # the re-drive's own back-off still brings them, later
        log.warning("rules.owed_events_brought_forward", events=moved)
