"""What is watched while the soak runs, for the checker's "skipped" figure.

``consumer_positions`` holds, per consumer group and partition, the next offset the group
will consume, written in the same transaction as what it stored; it only ever says the
latest value. The position sampler reads it twice a second and keeps every value with its
``updated_at`` (the database clock). The topic tap reads every record of the rules
service's input topics on its own (no consumer group), noting its offset and what it
carries. Together they say, for each position a consumer recorded: every record below it
should already have been in the audit log at that moment. A record that was not is a
record the consumer stepped over.

The broker forgets its topics on a restart and offsets start again from 0, so records and
positions are grouped by broker epoch; the fault injector tells the tap when the broker
goes away and comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from shared.events.dead_letters import ReceiptReference
from shared.events.topics import (
    ADVERSE_EVENTS,
    DATA_QUALITY,
    DEAD_LETTERS,
    LAB_RESULTS,
    MEDICATIONS,
    SUBJECTS,
)

INPUT_TOPICS = (SUBJECTS, LAB_RESULTS, ADVERSE_EVENTS, MEDICATIONS, DATA_QUALITY, DEAD_LETTERS)


@dataclass(frozen=True)
class PositionSample:
    group: str
    topic: str
    partition: int
    next_offset: int
    updated_at: float  # epoch seconds, database clock


@dataclass(frozen=True)
class TapRecord:
    epoch: int
    topic: str
    partition: int
    offset: int
    event_id: str | None  # the envelope's id; None for dead letters and unreadable records
    raw_sha256: bytes


@dataclass
class Epoch:
    """One broker lifetime: from its start to its stop (wall clock)."""

    started_at: float
    stopped_at: float | None = None


@dataclass(frozen=True)
class Observed:
    """What the observers saw while the run went."""

    positions: Sequence[PositionSample] = ()
    records: Sequence[TapRecord] = ()
    epochs: Sequence[Epoch] = ()


def _raw(value: bytes) -> bytes:
    """The SHA-256 of the raw message a record stands for: a dead letter that refers to
    a kept receipt (the only kind Vigil publishes since InputRejected v2) names it; any
    other record is its own raw."""
    with contextlib.suppress(ValueError):  # pydantic's ValidationError is a ValueError
        return bytes.fromhex(ReceiptReference.model_validate_json(value).raw_sha256)
    return hashlib.sha256(value).digest()


class PositionSampler:
    """Polls ``consumer_positions``; keeps each distinct value once."""

    def __init__(self, dsn: str, *, interval: float = 0.5) -> None:
        self._dsn = dsn
        self._interval = interval
        self.samples: set[PositionSample] = set()

    async def sample_once(self, connection: asyncpg.Connection) -> None:
        rows = await connection.fetch(
            """SELECT group_id, topic, partition, next_offset,
                      extract(epoch FROM updated_at)::float8 AS updated_at
               FROM consumer_positions"""
        )
        self.samples.update(
            PositionSample(
                r["group_id"], r["topic"], r["partition"], r["next_offset"], r["updated_at"]
            )
            for r in rows
        )

    async def run(self) -> None:
        """Sample until cancelled; a database that is away (a fault) is waited for."""
        connection: asyncpg.Connection | None = None
        while True:
            try:
                if connection is None or connection.is_closed():
                    connection = await asyncpg.connect(self._dsn, timeout=5)
                await self.sample_once(connection)
            except (asyncpg.PostgresError, OSError, TimeoutError):
                connection = None
            await asyncio.sleep(self._interval)


@dataclass
class TopicTap:
    """Reads every record of the input topics, epoch by epoch (a BrokerListener)."""

    bootstrap: str
    records: dict[tuple[int, str, int, int], TapRecord] = field(default_factory=dict)
    epochs: list[Epoch] = field(default_factory=lambda: [Epoch(time.time())])
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._read(len(self.epochs) - 1), name="topic-tap")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def broker_stopping(self) -> None:
        await self.stop()
        self.epochs[-1].stopped_at = time.time()

    async def broker_started(self, at: float) -> None:
        self.epochs.append(Epoch(at))
        self.start()

    async def _read(self, epoch: int) -> None:
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                request_timeout_ms=10_000,
            )
            try:
                await consumer.start()
                await self._follow(consumer, epoch)
            except (KafkaError, OSError) as error:
                del error  # the broker is away or restarting: connect again
                await asyncio.sleep(1)
            finally:
                await consumer.stop()

    async def _follow(self, consumer: AIOKafkaConsumer, epoch: int) -> None:
        assigned: set[TopicPartition] = set()
        next_check = 0.0
        while True:
            if time.monotonic() >= next_check:
                # topics come back when someone writes to them: widen the assignment
                await consumer.topics()
                wanted = {
                    TopicPartition(topic, partition)
                    for topic in INPUT_TOPICS
                    for partition in consumer.partitions_for_topic(topic) or ()
                }
                if wanted != assigned:
                    consumer.assign(sorted(wanted))
                    for tp in wanted:
                        consumer.seek(tp, self._next_offset(epoch, tp))
                    assigned = wanted
                next_check = time.monotonic() + 2
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            for tp, batch in batches.items():
                for record in batch:
                    self._keep(epoch, tp, record.offset, record.value or b"")

    def _next_offset(self, epoch: int, tp: TopicPartition) -> int:
        seen = [k[3] for k in self.records if k[:3] == (epoch, tp.topic, tp.partition)]
        return max(seen) + 1 if seen else 0

    def _keep(self, epoch: int, tp: TopicPartition, offset: int, value: bytes) -> None:
        event_id = None
        if tp.topic != DEAD_LETTERS:
            try:
                document = orjson.loads(value)
                event_id = str(document["id"]) if isinstance(document, dict) else None
            except (orjson.JSONDecodeError, KeyError):
                event_id = None
        key = (epoch, tp.topic, tp.partition, offset)
        self.records[key] = TapRecord(epoch, tp.topic, tp.partition, offset, event_id, _raw(value))
