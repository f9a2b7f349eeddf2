"""Placing the rules consumer at its stored positions is best effort: any error of the
database or the broker leaves the consumer at Kafka's committed offsets (a warning), and
never fails the rebalance."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiokafka import TopicPartition
from structlog.testing import capture_logs

from services.safety_rules.adapters.positions import SeekToStoredPositions


class _RefusingPool:
    """A pool whose every query fails with a PostgreSQL error that is no outage."""

    async def fetch(self, *args: Any) -> list[Any]:
        raise asyncpg.exceptions.InsufficientPrivilegeError("permission denied")

    async def execute(self, *args: Any) -> str:
        raise asyncpg.exceptions.InsufficientPrivilegeError("permission denied")


class _Consumer:
    def __init__(self) -> None:
        self.paused: tuple[TopicPartition, ...] = ()
        self.resumed: tuple[TopicPartition, ...] = ()
        self.seeks: list[tuple[TopicPartition, int]] = []

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused = partitions

    def resume(self, *partitions: TopicPartition) -> None:
        self.resumed = partitions

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks.append((partition, offset))

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(partitions, 0)


class _Subscriber:
    def __init__(self, consumer: _Consumer) -> None:
        self.consumer = consumer


async def test_a_database_error_that_is_no_outage_leaves_kafkas_offsets_with_a_warning() -> None:
    consumer = _Consumer()
    listener = SeekToStoredPositions(_RefusingPool(), "vigil-rules")
    listener.subscriber = _Subscriber(consumer)
    partition = TopicPartition("lab-results", 0)
    with capture_logs() as logs:
        await listener.on_partitions_assigned({partition})
    assert consumer.seeks == []
    assert consumer.resumed == (partition,)
    assert [entry["event"] for entry in logs] == ["rules.stored_positions_unavailable"]


async def test_owed_events_a_database_error_keeps_from_bringing_forward_are_left_for_later() -> (
    None
):
    listener = SeekToStoredPositions(_RefusingPool(), "vigil-rules")
    with capture_logs() as logs:
        await listener._redrive_owed()
    assert [entry["event"] for entry in logs] == ["rules.owed_events_not_brought_forward"]


class _Coordinator:
    def __init__(self) -> None:
        self.generation = 3


class _GroupConsumer(_Consumer):
    def __init__(self) -> None:
        super().__init__()
        self._coordinator = _Coordinator()


class _EmptyPool:
    async def fetch(self, *args: Any) -> list[Any]:
        return []

    async def execute(self, *args: Any) -> str:
        return "UPDATE 0"


async def test_a_group_generation_that_did_not_grow_means_the_broker_forgot_it_and_its_logs() -> (
    None
):
    """A broker that keeps the group only ever raises its generation; the development
    broker, restarted, starts again from 0 and holds new logs the consumer fetched on in
    at its old offsets: every partition is read again from its start."""
    consumer = _GroupConsumer()
    listener = SeekToStoredPositions(_EmptyPool(), "vigil-rules")
    listener.subscriber = _Subscriber(consumer)
    partitions = {TopicPartition("lab-results", 0), TopicPartition("lab-results", 1)}
    await listener.on_partitions_assigned(partitions)
    consumer._coordinator.generation = 4  # another member joined
    await listener.on_partitions_assigned(partitions)
    assert consumer.seeks == []

    consumer._coordinator.generation = 0  # the broker restarted
    with capture_logs() as logs:
        await listener.on_partitions_assigned(partitions)

    assert sorted(consumer.seeks) == sorted((p, 0) for p in partitions)
    assert "rules.group_forgotten" in [entry["event"] for entry in logs]
