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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import asyncpg
import orjson
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from shared.events.topics import (
    ADVERSE_EVENTS,
    DATA_QUALITY,
    DEAD_LETTERS,
    LAB_RESULTS,
    MEDICATIONS,
    SUBJECTS,
)

log = structlog.get_logger(__name__)
INPUT_TOPICS = (SUBJECTS, LAB_RESULTS, ADVERSE_EVENTS, MEDICATIONS, DATA_QUALITY, DEAD_LETTERS)
CATCH_UP_SECONDS = 60.0  # how long the tap may take to read what the broker holds, at most


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
    """One broker lifetime: from its start to its stop (wall clock).

    ``unread`` counts the records the broker held at the tap's stop (its high-water marks)
    that the tap had not read when its bounded wait to catch up ran out; ``None`` while the
    epoch goes on, or when the broker could not be asked."""

    started_at: float
    stopped_at: float | None = None
    unread: int | None = None


@dataclass(frozen=True)
class Observed:
    """What the observers saw while the run went."""

    positions: Sequence[PositionSample] = ()
    records: Sequence[TapRecord] = ()
    epochs: Sequence[Epoch] = ()

    def write(self, path: Path) -> None:
        """Everything observed, one JSON document a line, for a look after a failed run
        (which position passed which record, and when)."""
        with path.open("wb") as out:
            for number, epoch in enumerate(self.epochs):
                out.write(orjson.dumps({"epoch": number, **asdict(epoch)}) + b"\n")
            for sample in self.positions:
                out.write(orjson.dumps({"position": asdict(sample)}) + b"\n")
            for record in self.records:
                kept = {**asdict(record), "raw_sha256": record.raw_sha256.hex()}
                out.write(orjson.dumps({"record": kept}) + b"\n")


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
    # per (epoch, topic, partition): the offset after the furthest record read
    _read_to: dict[tuple[int, str, int], int] = field(default_factory=dict)

    def start(self) -> None:
        self._task = asyncio.create_task(self._read(len(self.epochs) - 1), name="topic-tap")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def finish(self, timeout: float = CATCH_UP_SECONDS) -> None:
        """Stop once every record the broker holds has been read (bounded by ``timeout``),
        and note on the epoch how many were left unread if the wait ran out."""
        if self._task is not None:
            self.epochs[-1].unread = await self.catch_up(timeout)
        await self.stop()

    async def broker_stopping(self) -> None:
        # the broker forgets everything: read all it holds before it goes
        await self.finish()
        self.epochs[-1].stopped_at = time.time()

    async def broker_started(self, at: float) -> None:
        self.epochs.append(Epoch(at))
        self.start()

    def _position(self, epoch: int, topic: str, partition: int) -> int:
        return self._read_to.get((epoch, topic, partition), 0)

    async def catch_up(self, timeout: float) -> int | None:
        """Wait until the tap has read up to each input partition's high-water mark, asked
        of the broker afresh until one answer finds nothing unread, or ``timeout`` passed.
        Returns how many records are known unread (0: caught up; ``None``: the broker did
        not answer)."""
        epoch = len(self.epochs) - 1
        began = time.monotonic()
        deadline = began + timeout
        unread: int | None = None
        behind: int | None = None
        while True:
            marks = await self._high_water(max(deadline - time.monotonic(), 1.0))
            if marks is not None:
                unread = sum(
                    max(mark - self._position(epoch, tp.topic, tp.partition), 0)
                    for tp, mark in marks.items()
                )
                behind = unread if behind is None else behind
            done = time.monotonic() >= deadline or self._task is None or self._task.done()
            if unread == 0 or done:
                log.info(
                    "soak.tap_caught_up" if unread == 0 else "soak.tap_behind",
                    epoch=epoch,
                    behind_when_asked=behind,
                    unread=unread,
                    seconds=round(time.monotonic() - began, 1),
                )
                return unread
            await asyncio.sleep(0.2)

    async def _high_water(self, timeout: float) -> dict[TopicPartition, int] | None:
        """Each input partition's high-water mark, from a consumer of its own."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            request_timeout_ms=int(min(timeout, 10.0) * 1000),
        )
        try:
            async with asyncio.timeout(timeout):
                await consumer.start()
                await consumer.topics()
                partitions = [
                    TopicPartition(topic, partition)
                    for topic in INPUT_TOPICS
                    for partition in consumer.partitions_for_topic(topic) or ()
                ]
                if not partitions:
                    return {}
                ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
                return ends
        except (KafkaError, OSError):  # TimeoutError included
            return None
        finally:
            with contextlib.suppress(KafkaError, OSError):
                await consumer.stop()

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
            except _TopicsChanged:
                # a new consumer learns every topic's partitions as it starts
                await asyncio.sleep(0.2)
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
                # topics come back when someone writes to them. ``topics()`` asks the
                # broker afresh but keeps the answer to itself: the partitions the consumer
                # knows are those it learnt when it started (aiokafka refreshes them every
                # five minutes), so a topic created since is read by a new consumer.
                present = set(await consumer.topics())
                if any(
                    consumer.partitions_for_topic(topic) is None
                    for topic in INPUT_TOPICS
                    if topic in present
                ):
                    raise _TopicsChanged
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
            if not assigned:
                # nothing to read yet; and ``getmany`` without an assignment waits for one
                # for ever, whatever its timeout
                await asyncio.sleep(0.5)
                continue
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            for tp, batch in batches.items():
                for record in batch:
                    self._keep(epoch, tp, record.offset, record.value or b"")

    def _next_offset(self, epoch: int, tp: TopicPartition) -> int:
        return self._position(epoch, tp.topic, tp.partition)

    def _keep(self, epoch: int, tp: TopicPartition, offset: int, value: bytes) -> None:
        event_id = None
        if tp.topic != DEAD_LETTERS:
            try:
                document = orjson.loads(value)
                event_id = str(document["id"]) if isinstance(document, dict) else None
            except (orjson.JSONDecodeError, KeyError):
                event_id = None
        key = (epoch, tp.topic, tp.partition, offset)
        self.records[key] = TapRecord(
            epoch, tp.topic, tp.partition, offset, event_id, _raw_sha256(tp.topic, value)
        )
        place = (epoch, tp.topic, tp.partition)
        self._read_to[place] = max(self._read_to.get(place, 0), offset + 1)


class _TopicsChanged(Exception):
    """The broker has an input topic the consumer does not know the partitions of."""


def _raw_sha256(topic: str, value: bytes) -> bytes:
    """The SHA-256 of the message a record carries: a dead letter refers to its message
    kept in the receipt store (and names that message's hash); any other record is the
    message itself."""
    if topic == DEAD_LETTERS:
        with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return bytes.fromhex(orjson.loads(value)["raw_sha256"])
    return hashlib.sha256(value).digest()
