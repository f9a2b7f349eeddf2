"""Where the rules service's consumer starts: the positions stored with the data."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from shared.owed_events import owed_events_due_now

log = structlog.get_logger(__name__)
# Placing the partitions is best effort: whatever the database or the broker answers
# (any PostgreSQL error, not only an outage), the consumer starts from Kafka's committed
# offsets rather than fail the rebalance.
RETRYABLE = (asyncpg.PostgresError, OSError, KafkaError, TimeoutError)
# how long the listener waits for the records it reads to tell an old log from a new one
PROBE_SECONDS = 5.0

# the id of the event a consumed record is (topic, value, headers); None when it is none
EventIdOf = Callable[[str, bytes, tuple[tuple[str, bytes], ...]], uuid.UUID | None]


class SeekToStoredPositions(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, continue from the positions the database recorded with the data.

    Kafka's committed offsets are only a hint: they are committed after the database
    commit, so they can lag (a crash in between) or be lost (a broker that forgot them).
    A stored position beyond the partition's end means the broker lost the log itself (a
    memory-only development broker restarted); the consumer then reads what the broker
    has from its start, and the event store drops what it already holds, and every event
    ingest still owes the audit log is made due for re-publishing at once (what the
    broker held of them is gone; see shared/owed_events.py).

    A broker that lost the log may also hold a new one as long as the old by the time the
    group is joined again (the development broker, restarted under load): the stored
    position then lies inside a log it was not stored from, and seeking there would step
    over every record before it. So the record just before each stored position is read
    (``probe``: the options of a consumer of no group): if it is an event the audit log
    does not hold (nor refused), the log is a new one, read from its start. Anything else
    (the event is held, the record is no event, the broker did not answer in time) keeps
    the stored position. Kafka's committed offsets cannot tell: after such a restart the
    development broker was seen answering a partition's old offset (commits of a batch in
    flight across the restart, answered UnknownMemberId, appear to be kept).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        group_id: str,
        *,
        probe: Mapping[str, Any] | None = None,
        event_id_of: EventIdOf | None = None,
    ) -> None:
        self._pool = pool
        self._group_id = group_id
        self._probe = dict(probe) if probe is not None else None
        self._event_id_of = event_id_of
        self.subscriber: Any = None  # the FastStream subscriber, set once it exists
        self._generation: int | None = None  # of the group, at the last assignment

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        consumer = getattr(self.subscriber, "consumer", None)
        if consumer is None or not assigned:
            return
        # the fetcher starts at Kafka's committed (or the earliest) offset as soon as the
        # partitions are assigned; held until they are placed, no record from there reaches
        # the handler first (and moves the stored position back)
        consumer.pause(*assigned)
        try:
            if self._group_forgotten(consumer):
                await self._from_the_start(consumer, assigned)
                return
            await self._place(consumer, assigned)
        finally:
            consumer.resume(*assigned)

    def _group_forgotten(self, consumer: Any) -> bool:
        """Whether the broker forgot the group since the last assignment: its generation,
        which only grows while a broker keeps the group, did not."""
        coordinator = getattr(consumer, "_coordinator", None)
        generation = getattr(coordinator, "generation", None)
        if not isinstance(generation, int):
            return False
        last, self._generation = self._generation, generation
        return last is not None and generation <= last

    async def _from_the_start(self, consumer: Any, assigned: set[TopicPartition]) -> None:
        """The broker restarted under the consumer (the development broker forgets its
        logs): it fetched on at its old offsets in the new logs, answered with no error
        until they grew that long, so whatever came before them was stepped over. Each log
        is read again from its start; the event store drops what it already holds."""
        log.warning(
            "rules.group_forgotten",
            generation=self._generation,
            partitions=len(assigned),
            hint="the broker restarted and lost its logs: reading them again from the start",
        )
        for partition in sorted(assigned):
            consumer.seek(partition, 0)
        await self._redrive_owed()

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
        placed: dict[TopicPartition, int] = {}
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
                if position > end + 1:
                    lost = True
                    # what the broker has, from its start: Kafka's committed offset may
                    # be one a batch in flight committed to the new broker
                    consumer.seek(partition, 0)
                continue
            placed[partition] = position
        for partition in await self._replaced(placed):
            log.warning(
                "rules.partition_log_replaced",
                topic=partition.topic,
                partition=partition.partition,
                stored=placed.pop(partition),
                end=ends.get(partition),
            )
            lost = True
            consumer.seek(partition, 0)
        for partition, position in placed.items():
            consumer.seek(partition, position)
        if lost:
            await self._redrive_owed()

    async def _replaced(self, placed: Mapping[TopicPartition, int]) -> list[TopicPartition]:
        """The partitions whose log is not the one their position was stored from: the
        record before the stored position is an event the audit log does not hold."""
        if self._probe is None or self._event_id_of is None:
            return []
        doubtful = [tp for tp, position in placed.items() if position > 0]
        if not doubtful:
            return []
        try:
            last = await self._last_records(doubtful, placed)
            ids = {tp: self._event_id_of(tp.topic, *record) for tp, record in last.items()}
            known = await self._held([i for i in ids.values() if i is not None])
        except RETRYABLE as error:
            log.warning("rules.stored_positions_unchecked", error=repr(error))
            return []
        return [
            tp for tp, event_id in ids.items() if event_id is not None and event_id not in known
        ]

    async def _last_records(
        self, partitions: list[TopicPartition], placed: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, tuple[bytes, tuple[tuple[str, bytes], ...]]]:
        """The value and headers of the record just before each stored position."""
        reader = AIOKafkaConsumer(
            **(self._probe or {}), enable_auto_commit=False, auto_offset_reset="none"
        )
        found: dict[TopicPartition, tuple[bytes, tuple[tuple[str, bytes], ...]]] = {}
        await reader.start()
        try:
            reader.assign(partitions)
            for tp in partitions:
                reader.seek(tp, placed[tp] - 1)
            async with asyncio.timeout(PROBE_SECONDS):
                while len(found) < len(partitions):
                    batches = await reader.getmany(timeout_ms=500)
                    for tp, records in batches.items():
                        for record in records:
                            if record.offset == placed[tp] - 1:
                                found[tp] = (record.value or b"", tuple(record.headers or ()))
                        reader.pause(tp)
        finally:
            await reader.stop()
        return found

    async def _held(self, event_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these events the audit log holds, or refused (dead-lettered)."""
        if not event_ids:
            return set()
        rows = await self._pool.fetch(
            """SELECT event_id FROM events WHERE event_id = ANY($1::uuid[])
               UNION SELECT event_id FROM dead_lettered_events WHERE event_id = ANY($1::uuid[])""",
            event_ids,
        )
        return {row["event_id"] for row in rows}

    async def _redrive_owed(self) -> None:
        try:
            moved = await owed_events_due_now(self._pool)
        except RETRYABLE as error:
            log.warning("rules.owed_events_not_brought_forward", error=repr(error))
            return  # the re-drive's own back-off still brings them, later
        log.warning("rules.owed_events_brought_forward", events=moved)
