"""The rules service's Kafka consumers: they translate records and delegate to handlers."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import structlog
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from services.safety_rules.adapters.postgres import HistoryCache, PostgresRulesUnitOfWork
from services.safety_rules.domain.rule_pack import RulePack
from services.safety_rules.handlers import BatchOutcome, handle_batch
from services.safety_rules.records import (
    Record,
    Rejected,
    kept_rejection,
    parse_records,
    rejected_input,
)
from shared import eventstore
from shared.db.receipts import ReceiptRow, keep_receipts
from shared.events import Envelope
from shared.events.topics import DEAD_LETTERS
from shared.projections import ProjectionRunner

log = structlog.get_logger(__name__)
RETRYABLE = (asyncpg.PostgresError, OSError, KafkaError, TimeoutError)
# events of the subject-state projection applied in a batch's own transaction at most; the
# rest (a backlog after a rebuild, say) is left to the projection's own loop
PROJECTION_CATCH_UP = 5000


def records_of(message: KafkaMessage) -> list[Record]:
    raw = message.raw_message
    consumed = raw if isinstance(raw, tuple) else (raw,)
    return [
        Record(r.topic, r.partition, r.offset, r.value or b"", tuple(r.headers or ()))
        for r in consumed
    ]


class CollectorPacing:
    """Keeps Python's cycle collector from stalling the pipeline.

    The history cache holds hundreds of thousands of long-lived objects; a full collection
    walks them all (hundreds of ms), and every result queued behind it waits. After each
    batch the young generations are collected (cheap) and what survives is frozen out of
    later collections; a full collection of everything runs once every ``full_every``
    seconds, so cyclic garbage among frozen objects is still reclaimed.
    """

    def __init__(self, full_every: float = 600.0) -> None:
        self._full_every = full_every
        self._last_full = time.monotonic()

    def after_batch(self) -> None:
        now = time.monotonic()
        if now - self._last_full >= self._full_every:
            gc.unfreeze()
            gc.collect()
            self._last_full = now
        else:
            gc.collect(1)
        gc.freeze()


class _Backoff:
    """Sleeps longer after each consecutive failure, so a rewound batch does not spin."""

    def __init__(self) -> None:
        self._failures = 0

    async def failed(self, error: BaseException) -> None:
        self._failures += 1
        delay = min(0.2 * 2**self._failures, 10.0)
        log.error("rules.batch_failed", error=repr(error), retry_in_seconds=delay)
        await asyncio.sleep(delay)

    def succeeded(self) -> None:
        self._failures = 0


async def keep_raw(pool: asyncpg.Pool, receipts: list[ReceiptRow]) -> None:
    """Keep records verbatim in the receipt store (a record kept before is left as is)."""
    if receipts:
        async with pool.acquire() as connection:
            await keep_receipts(connection, receipts)


async def publish_dead_letters(
    broker: KafkaBroker, pool: asyncpg.Pool, rejected: list[Rejected], by: str
) -> None:
    """Keep records that are not valid events in the receipt store, then put a dead letter
    referring to each on the dead-letter topic: the raw record (which may carry names and
    record numbers) never travels further than the access-controlled receipt store."""
    kept = [kept_rejection(item, by) for item in rejected]
    await keep_raw(pool, [item.receipt for item in kept])
    await asyncio.gather(
        *(
            broker.publish(item.letter.value, topic=DEAD_LETTERS, headers=item.letter.headers)
            for item in kept
        )
    )
    for item, letter in zip(rejected, kept, strict=True):
        log.warning(
            "rules.dead_lettered",
            reason=item.reason[:300],
            origin=item.record.origin,
            receipt_id=str(letter.receipt.receipt_id),
        )


class FactsConsumer:
    """Per batch: dead-letter bad records, then one transaction for everything else.

    Records from the dead-letter topic become InputRejected events in the same
    transaction (a raw one is first kept in the receipt store). Kafka offsets are
    committed by FastStream after this returns, i.e. after the database commit; on an
    error the batch is rewound and consumed again. An event whose id is already stored
    with other content is dead-lettered and the batch retried without it.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        broker: KafkaBroker,
        packs: dict[str, RulePack],
        *,
        group_id: str,
        on_commit: Callable[[bool, bool], None],
        cache: HistoryCache | None = None,
        projection: ProjectionRunner | None = None,
    ) -> None:
        self._pool = pool
        self._broker = broker
        self._packs = packs
        self._group_id = group_id
        self._on_commit = on_commit
        self._backoff = _Backoff()
        self._cache = cache if cache is not None else HistoryCache()
        self._collector = CollectorPacing()
        self._projection = projection

    async def __call__(self, message: KafkaMessage) -> None:
        records = records_of(message)
        facts = [record for record in records if record.topic != DEAD_LETTERS]
        envelopes, rejected = parse_records(facts)
        by_id = {
            envelope.id: record
            for envelope, record in zip(envelopes, _valid(facts, rejected), strict=True)
        }
        dead = [rejected_input(r) for r in records if r.topic == DEAD_LETTERS]
        envelopes += [envelope for envelope, _ in dead]
        positions = next_positions(records)
        began = time.perf_counter()
        try:
            # raw dead letters are kept before their InputRejected refers to them
            await keep_raw(self._pool, [receipt for _, receipt in dead if receipt is not None])
            for _ in range(len(envelopes) + 1):
                if rejected:
                    await publish_dead_letters(self._broker, self._pool, rejected, self._group_id)
                    rejected = []
                try:
                    outcome, projection_behind = await self._commit(envelopes, positions)
                    break
                except eventstore.EventIdConflict as conflict:
                    envelopes = [e for e in envelopes if e.id != conflict.event_id]
                    rejected = [Rejected(by_id[conflict.event_id], str(conflict))]
                except eventstore.StreamVersionConflict as conflict:
                    # another instance wrote this subject while the batch was judged (a
                    # partition moved between instances): judge again on what it wrote
                    log.warning("rules.subject_moved_meanwhile", detail=str(conflict))
            else:
                raise RuntimeError("the batch could not be stored after repeated conflicts")
        except RETRYABLE as error:
            await self._backoff.failed(error)
            raise
        except Exception:
            # a bug, not an outage: say so loudly; the batch is rewound and tried again
            log.exception("rules.batch_crashed", records=len(records))
            await self._backoff.failed(RuntimeError("batch crashed"))
            raise
        self._backoff.succeeded()
        self._collector.after_batch()
        self._on_commit(bool(outcome.published), projection_behind)
        log.info(
            "rules.batch_done",
            records=len(records),
            stored=outcome.stored,
            duplicates=outcome.duplicates,
            signals=len(outcome.signals),
            data_quality=len(outcome.data_quality),
            seconds=round(time.perf_counter() - began, 4),
        )

    async def _commit(
        self, envelopes: list[Envelope], positions: dict[tuple[str, int], int]
    ) -> tuple[BatchOutcome, bool]:
        """The batch's one transaction; returns its outcome and whether the subject state
        was left behind. The batch folds its events into the cached histories before it
        commits, so whatever keeps it from committing (an error, a conflict, a
        cancellation) drops the cache, and the next batch reads the log again."""
        try:
            async with self._pool.acquire() as connection, connection.transaction():
                uow = PostgresRulesUnitOfWork(connection, self._cache)
                outcome = await handle_batch(envelopes, uow, self._packs)
                await uow.record_positions(self._group_id, positions)
                if self._projection is None:
                    return outcome, False
                # the subject state moves with the facts, in the same commit
                applied = await self._projection.catch_up_in(connection, limit=PROJECTION_CATCH_UP)
            return outcome, applied >= PROJECTION_CATCH_UP
        except BaseException:
            self._cache.clear()
            raise


def _valid(records: list[Record], rejected: list[Rejected]) -> list[Record]:
    bad = {id(item.record) for item in rejected}
    return [record for record in records if id(record) not in bad]


def next_positions(records: list[Record]) -> dict[tuple[str, int], int]:
    """The next offset to consume in each partition once these records are stored."""
    positions: dict[tuple[str, int], int] = {}
    for record in records:
        key = (record.topic, record.partition)
        positions[key] = max(positions.get(key, 0), record.offset + 1)
    return positions


class SeekToStoredPositions(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, continue from the positions the database recorded with the data.

    Kafka's committed offsets are only a hint: they are committed after the database
    commit, so they can lag (a crash in between) or be lost (a broker that forgot them).
    A stored position beyond the partition's end means the broker lost the log itself (a
    memory-only development broker restarted); the consumer then reads what the broker
    has, and the event store drops what it already holds.
    """

    def __init__(self, pool: asyncpg.Pool, group_id: str) -> None:
        self._pool = pool
        self._group_id = group_id
        self.subscriber: Any = None  # the FastStream subscriber, set once it exists

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
                continue
            consumer.seek(partition, position)
