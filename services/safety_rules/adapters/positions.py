"""Where the rules service's consumer starts: the positions stored with the data."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import asyncpg
import structlog
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from services.safety_rules.adapters.stored_logs import EventIdOf, LogVerdict, judge_logs
from shared.owed_events import owed_events_due_now
from shared.settings import CommonSettings

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

    With ``probe`` (the settings of a Kafka client) and ``event_id_of``, the record just
    before each stored position is read to tell a log kept from one lost or replaced
    (:mod:`services.safety_rules.adapters.stored_logs`): a broker restarted under load
    may hold a new log as long as the old by the time the group is joined again, and
    seeking to the stored position would step over all before it. Kafka's committed
    offsets cannot tell: after such a restart the development broker was seen answering a
    partition's old offset. And a group whose generation did not grow since the last
    assignment was forgotten by its broker: every assigned partition is read again from
    its start (see :meth:`_from_the_start`).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        group_id: str,
        *,
        settle: Callable[[], Awaitable[None]] | None = None,
        forget: Callable[[Iterable[tuple[str, int]]], None] | None = None,
        probe: CommonSettings | None = None,
        event_id_of: EventIdOf | None = None,
    ) -> None:
        self._pool = pool
        self._group_id = group_id
        # the consumer's batch under way is stored (or failed) before partitions are given
        # up, so whoever takes them starts from what it stored; a rewind owed on a
        # partition is forgotten when it is placed again
        self._settle = settle
        self._forget = forget
        self._probe = probe
        self._event_id_of = event_id_of
        self.subscriber: Any = None  # the FastStream subscriber, set once it exists
        self._generation: int | None = None  # of the group, at the last assignment

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
        except RETRYABLE as error:
            log.warning("rules.stored_positions_unavailable", error=repr(error))
            return  # Kafka's committed offsets then; what was stored is dropped as a repeat
        stored = {(row["topic"], row["partition"]): row["next_offset"] for row in rows}
        positions = {
            tp: stored[(tp.topic, tp.partition)]
            for tp in sorted(assigned)
            if (tp.topic, tp.partition) in stored
        }
        if self._probe is not None and self._event_id_of is not None:
            lost = await self._place_judged(consumer, positions, self._probe, self._event_id_of)
        else:
            lost = await self._place_by_ends(consumer, positions)
        if lost:
            await self._redrive_owed()

    async def _place_judged(
        self,
        consumer: Any,
        positions: dict[TopicPartition, int],
        probe: CommonSettings,
        event_id_of: EventIdOf,
    ) -> bool:
        """Seek to the stored positions, except in a log lost or replaced since (see
        :mod:`services.safety_rules.adapters.stored_logs`): that one is read from its start.
        Returns whether a log was lost."""
        try:
            verdicts = await judge_logs(self._pool, probe, event_id_of, positions)
        except RETRYABLE as error:
            log.warning("rules.stored_logs_unjudged", error=repr(error))
            verdicts = {}
        lost = False
        for partition, position in positions.items():
            verdict = verdicts.get(partition, LogVerdict.KEPT)
            if verdict is LogVerdict.KEPT:
                consumer.seek(partition, position)
                continue
            log.warning(
                f"rules.partition_log_{verdict.value}",
                topic=partition.topic,
                partition=partition.partition,
                stored=position,
            )
            lost = True
            consumer.seek(partition, 0)  # what the broker has, from its start
        return lost

    async def _place_by_ends(self, consumer: Any, positions: dict[TopicPartition, int]) -> bool:
        """Seek to the stored positions that are not beyond their log's end (ListOffsets);
        returns whether a log was lost."""
        try:
            ends = await consumer.end_offsets(list(positions))
        except RETRYABLE as error:
            log.warning("rules.stored_positions_unavailable", error=repr(error))
            return False
        lost = False
        for partition, position in positions.items():
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
                # kept whole at times (it undercounts a last batch of several records); a
                # real loss leaves the end well behind
                lost = lost or position > end + 1
                continue
            consumer.seek(partition, position)
        return lost

    async def _redrive_owed(self) -> None:
        try:
            moved = await owed_events_due_now(self._pool)
        except RETRYABLE as error:
            log.warning("rules.owed_events_not_brought_forward", error=repr(error))
            return  # the re-drive's own back-off still brings them, later
        log.warning("rules.owed_events_brought_forward", events=moved)
