"""The rules service's Kafka consumers: they translate records and delegate to handlers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.message import StreamMessage

from services.safety_rules import metrics
from services.safety_rules.adapters.postgres import HistoryCache, PostgresRulesUnitOfWork
from services.safety_rules.domain.rule_pack import RulePack
from services.safety_rules.entrypoints.poison import RecordFailure, RepeatedConflicts, is_transient
from services.safety_rules.entrypoints.records import (
    Entry,
    Rejected,
    on_their_topics,
    parse_records,
    rejected_input,
)
from services.safety_rules.handlers.facts import BatchOutcome, handle_batch
from shared import eventstore
from shared.batch_consumer import Record, dead_letter, records_of
from shared.events import Envelope, SubjectEnrolled
from shared.events.topics import DEAD_LETTERS
from shared.kafka_commits import bounded_commit
from shared.projections import ProjectionRunner
from shared.rejections import keep_raw
from shared.supervision import Progress

log = structlog.get_logger(__name__)
# events of the subject-state projection applied in a batch's own transaction at most; the
# rest (a backlog after a rebuild, say) is left to the projection's own loop
PROJECTION_CATCH_UP = 5000


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

    def __init__(self, stopping: asyncio.Event) -> None:
        self._failures = 0
        self._stopping = stopping  # set: the service stops, no retry to wait for

    async def failed(self, error: BaseException) -> None:
        self._failures += 1
        delay = min(0.2 * 2**self._failures, 10.0)
        log.error("rules.batch_failed", error=repr(error), retry_in_seconds=delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)

    def succeeded(self) -> None:
        self._failures = 0


class PreviousBatchFailed(Exception):
    """The batch before this one did not commit as it was judged: this one, judged on what
    that one would have left, is rewound with it and consumed again (only this one when
    the previous one did commit, after a retry or a split)."""

    def __init__(self, reason: str, *, committed: bool) -> None:
        super().__init__(reason)
        self.committed = committed


Offsets = dict[tuple[str, int], int]


@dataclass(eq=False)
class _InFlight:
    """A batch whose transaction is under way: its task, the event ids it stores (not yet
    visible to another transaction), where the consumer must go back to if it fails (its
    first offsets: a batch before it goes back for itself), and whether it has judged (a
    later batch judges only after it, on the histories it folded)."""

    ids: frozenset[uuid.UUID]
    first: Offsets
    judged: asyncio.Event = field(default_factory=asyncio.Event)
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # committed or failed
    task: asyncio.Task[bool] = field(init=False)


async def publish_dead_letters(
    broker: KafkaBroker, pool: asyncpg.Pool, rejected: list[Rejected], by: str
) -> None:
    """Keep refused records and dead-letter them (see :func:`shared.batch_consumer.dead_letter`)."""
    await dead_letter(broker, pool, rejected, rejected_by=by, service="rules")


class FactsConsumer:
    """Per batch: one transaction that stores and judges the events, records what was
    refused and moves the consumer positions.

    Pipelined: a batch is judged while the one before it commits (``pipelined``). Batch
    N+1 is parsed, read and judged on the histories batch N folded in (the events N stores
    count as stored); its append then waits for N's commit (the audit log's append lock),
    and its transaction commits only if N committed as it was judged: otherwise N+1 fails
    too (:class:`PreviousBatchFailed`) and the consumer is rewound to N's first offsets, so
    a failed batch is never skipped. A batch with refused records waits for the one before
    it and is stored alone. Each batch's Kafka offsets (its own, not the consumer's
    position) are committed after its database commit; a failure seeks the consumer back
    (the caller must not rewind: see :func:`supervised`).

    A database or broker that is away rewinds the batch, retried with back-off. A
    failure the data causes (a value the store cannot hold, an exception in the rules) is
    not retried as it is: the batch is split until the record that fails is found, the
    rest is stored and judged, and that record is dead-lettered (its InputRejected event
    and a dead_lettered_events row in the transaction that moves past it), so a poison
    record delays its partition by seconds and never stops it. Records from the
    dead-letter topic become InputRejected events like any other event.
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
        pipelined: bool = True,
        incremental: bool = True,
        progress: Progress | None = None,
    ) -> None:
        self._pipelined = pipelined
        self._incremental = incremental
        self._progress = progress
        self._in_flight: _InFlight | None = None
        # where a failed batch sent the consumer back to: a batch fetched before that seek
        # and handed over after it is dropped (and the seek repeated), never stored
        self._rewound: Offsets = {}
        self._pool = pool
        self._broker = broker
        self._packs = packs
        self._group_id = group_id
        self._on_commit = on_commit
        # set when the service stops: no batch is begun any more
        self._stopping = asyncio.Event()
        self._backoff = _Backoff(self._stopping)
        self._cache = cache if cache is not None else HistoryCache()
        self._collector = CollectorPacing()
        self._projection = projection

    async def __call__(self, message: KafkaMessage) -> None:
        records = records_of(message)
        if not records or self._stopping.is_set():
            return  # stopping: read again from the stored positions at the next start
        first = first_offsets(records)
        consumer = getattr(message, "consumer", None)
        if self._stale(first, consumer):
            return
        facts = [record for record in records if record.topic != DEAD_LETTERS]
        entries, rejected = parse_records(facts)
        entries, misrouted = on_their_topics(entries)
        rejected += misrouted
        dead = [
            (record, *rejected_input(record)) for record in records if record.topic == DEAD_LETTERS
        ]
        entries += [Entry(record, envelope) for record, envelope, _ in dead]
        raw = [receipt for _, _, receipt in dead if receipt is not None]
        # enrolments first: a split batch then stores a subject before its results
        entries.sort(key=lambda entry: _processing_order(entry.envelope))
        positions = next_positions(records)
        previous = self._in_flight
        if previous is not None and previous.settled.is_set():
            previous = None  # committed; or failed, and rewound the consumer itself
        if previous is not None and (raw or rejected or not self._pipelined):
            await self._settle(previous)
            previous = None
        if self._stopping.is_set():
            return  # stopped while the batch before it settled
        ids = frozenset(entry.envelope.id for entry in entries)
        batch = _InFlight(ids, first)
        batch.task = asyncio.create_task(
            self._run(batch, previous, consumer, len(records), entries, rejected, raw, positions)
        )
        batch.task.add_done_callback(_retrieved)
        self._in_flight = batch
        if previous is not None:
            # meanwhile this batch is read and judged on what the previous one leaves
            await self._settle(previous)
        if not self._pipelined:
            await self._settle(batch)

    async def drain(self) -> None:
        """Wait for the batch under way to commit or fail in the database (before
        partitions are given up: another instance then starts from what it stored); its
        failure was handled where it happened."""
        batch = self._in_flight
        if batch is not None:
            await batch.settled.wait()

    async def stop(self) -> None:
        """Begin no batch any more, and wait until the one under way has finished: its
        transaction, and then its offsets' commit to Kafka (bounded), so the consumer is
        never closed under that commit (aiokafka logs that as an error an operator would
        be paged for, though nothing is lost). A batch handed over meanwhile is not begun:
        the positions stored with the data are where the next start reads from."""
        self._stopping.set()  # and a failed batch's back-off ends now
        while (batch := self._in_flight) is not None and not batch.task.done():
            await asyncio.wait({batch.task})
        self._in_flight = None

    async def _settle(self, batch: _InFlight) -> None:
        """Wait for a batch's commit; raises when it failed (it rewound the consumer)."""
        try:
            await batch.task
        finally:
            if self._in_flight is batch and batch.task.done():
                self._in_flight = None

    def _stale(self, first: Offsets, consumer: Any) -> bool:
        """Whether these records were fetched before a failed batch sent the consumer back
        (they start past where it went back to): then they are dropped and the seek is
        made again, so nothing after a failed batch is stored before it."""
        if not self._rewound:
            return False
        ahead = {
            key: self._rewound[key]
            for key, offset in first.items()
            if key in self._rewound and offset > self._rewound[key]
        }
        for key in first:
            self._rewound.pop(key, None)  # once: a gap in the offsets is no reason to loop
        if not ahead:
            return False
        log.warning("rules.stale_batch_dropped", partitions=len(ahead))
        _seek(consumer, ahead)
        return True

    def forget(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Partitions given up or newly placed (a rebalance): no rewind is owed on them."""
        for key in partitions:
            self._rewound.pop(key, None)

    async def _run(
        self,
        batch: _InFlight,
        previous: _InFlight | None,
        consumer: Any,
        count: int,
        entries: list[Entry],
        rejected: list[Rejected],
        raw: list[Any],
        positions: Offsets,
    ) -> bool:
        """The batch's transaction (after ``previous`` judged, and committing only if
        it committed); then its offsets to Kafka. Returns whether it committed as judged
        the first time (a later batch judged on it may stand)."""
        began = time.perf_counter()
        try:
            if previous is not None:
                await previous.judged.wait()
            # raw dead letters are kept before their InputRejected refers to them
            await keep_raw(self._pool, raw)
            outcome, projection_behind, clean = await self._store(
                entries, rejected, positions, previous, batch
            )
        except BaseException as error:
            batch.judged.set()
            batch.settled.set()
            self._cache.clear()
            # back to the previous batch too, unless it committed (then only this one)
            # back to this batch's first offsets: a batch before it that failed sent the
            # consumer back for its own records already (before this one heard of it),
            # and one that committed must not be read again (its poison records would be
            # refused and counted twice); where both owe a rewind the earlier one stands
            for key, offset in batch.first.items():
                self._rewound[key] = min(offset, self._rewound.get(key, offset))
            _seek(consumer, {key: self._rewound[key] for key in batch.first})
            if isinstance(error, PreviousBatchFailed | asyncio.CancelledError):
                raise  # the batch before it said why, and waited
            if is_transient(error):
                await self._backoff.failed(error)
            else:
                # not an outage, and not one record either: say so loudly
                log.exception("rules.batch_crashed", records=count, exc_info=error)
                await self._backoff.failed(RuntimeError("batch crashed"))
            raise
        batch.settled.set()
        self._backoff.succeeded()
        self._collector.after_batch()
        self._on_commit(bool(outcome.published), projection_behind)
        log.info(
            "rules.batch_done",
            records=count,
            stored=outcome.stored,
            duplicates=outcome.duplicates,
            signals=len(outcome.signals),
            data_quality=len(outcome.data_quality),
            whole_walks=len(outcome.walked),
            seconds=round(time.perf_counter() - began, 4),
        )
        await _commit_offsets(consumer, positions, self._progress)
        return clean

    async def _store(
        self,
        entries: list[Entry],
        rejected: list[Rejected],
        positions: dict[tuple[str, int], int],
        previous: _InFlight | None = None,
        batch: _InFlight | None = None,
    ) -> tuple[BatchOutcome, bool, bool]:
        """The batch stored whole; or, when its data makes it fail, split until each
        record that fails is found, and stored without them. The last flag: stored whole
        at the first try (what the batch after it was judged on)."""
        try:
            if batch is None or rejected:
                # refused records are dead-lettered before the positions move past them
                # (the handler lets no batch with refusals run alongside another)
                try:
                    return (*await self._commit_resolving(entries, rejected, positions), True)
                finally:
                    if batch is not None:
                        batch.judged.set()
            # the first try judges on the previous batch's histories while it commits; a
            # conflict or a failing record is resolved once the previous one is settled
            failure: RecordFailure | None = None
            try:
                return (*await self._commit(entries, rejected, positions, previous, batch), True)
            except (eventstore.EventIdConflict, eventstore.StreamVersionConflict):
                pass
            except RecordFailure as error:
                failure = error
            finally:
                batch.judged.set()
            if previous is not None:
                await _committed_as_judged(previous)
            if failure is not None:
                raise failure
            return (*await self._commit_resolving(entries, rejected, positions), False)
        except RecordFailure as failure:
            log.warning("rules.batch_split", records=len(entries), reason=failure.reason)
        # a failure the batch's records do not cause (the projection, say) is no reason
        # to refuse them: it is an error to retry, as any other
        await self._commit_resolving([], [], None)
        poisoned = await self._dead_lettered_before(entries)
        poisoned += await self._isolate(_without(entries, (item for item, _ in poisoned)))
        refused = [item for item, _ in poisoned]
        # the parts stored while splitting may have raised signals: the relay is told now
        self._on_commit(True, True)
        outcome, behind = await self._commit_resolving(
            _without(entries, refused), [*rejected, *refused], positions
        )
        # counted once the transaction that dead-letters them committed: a commit that
        # fails (an outage) is retried from the records, which would count them again
        for item, step in poisoned:
            metrics.POISON_RECORDS.labels(step=step).inc()
            log.warning(
                "rules.poison_record",
                origin=item.record.origin,
                event_id=str(item.event_id),
                reason=item.reason,
            )
        return outcome, behind, False

    async def _dead_lettered_before(self, entries: list[Entry]) -> list[tuple[Rejected, str]]:
        """Events dead-lettered already (sent again by a re-drive or a partner): refused
        again at once, without splitting the batch to find them."""
        async with self._pool.acquire() as connection:
            known = await PostgresRulesUnitOfWork(connection).dead_lettered(
                [entry.envelope.id for entry in entries]
            )
        return [
            (Rejected(e.record, known[e.envelope.id], e.envelope.id), "known")
            for e in entries
            if e.envelope.id in known
        ]

    async def _isolate(self, entries: list[Entry]) -> list[tuple[Rejected, str]]:
        """Store what can be stored (without moving positions), halving the failing part
        until each record that fails alone is found; returns those, with their step."""
        if not entries:
            return []
        try:
            await self._commit_resolving(entries, [], None)
            return []
        except RecordFailure as failure:
            if len(entries) == 1:
                (entry,) = entries
                reason = f"poison record: {failure.reason}"
                return [(Rejected(entry.record, reason, entry.envelope.id), failure.step)]
        middle = len(entries) // 2
        return await self._isolate(entries[:middle]) + await self._isolate(entries[middle:])

    async def _commit_resolving(
        self,
        entries: list[Entry],
        rejected: list[Rejected],
        positions: dict[tuple[str, int], int] | None,
    ) -> tuple[BatchOutcome, bool]:
        """Commit, resolving conflicts: an event id stored with other content is refused,
        a subject another instance wrote meanwhile is judged again."""
        entries, rejected = list(entries), list(rejected)
        published = 0
        for _ in range(len(entries) + 2):
            if positions is not None and len(rejected) > published:
                # before the positions move past them; a repeat after a crash is harmless
                await publish_dead_letters(
                    self._broker, self._pool, rejected[published:], self._group_id
                )
                published = len(rejected)
            try:
                return await self._commit(entries, rejected, positions)
            except eventstore.EventIdConflict as conflict:
                conflicting = [e for e in entries if e.envelope.id == conflict.event_id]
                if not conflicting:
                    raise
                refused = Rejected(conflicting[0].record, str(conflict), conflict.event_id)
                entries = _without(entries, [refused])
                rejected.append(refused)
            except eventstore.StreamVersionConflict as conflict:
                # another instance wrote this subject while the batch was judged (a
                # partition moved between instances): judge again on what it wrote
                log.warning("rules.subject_moved_meanwhile", detail=str(conflict))
        raise RepeatedConflicts("the batch could not be stored after repeated conflicts")

    async def _commit(
        self,
        entries: list[Entry],
        rejected: list[Rejected],
        positions: dict[tuple[str, int], int] | None,
        previous: _InFlight | None = None,
        batch: _InFlight | None = None,
    ) -> tuple[BatchOutcome, bool]:
        """The batch's one transaction; returns its outcome and whether the subject state
        was left behind. The batch folds its events into the cached histories before it
        commits, so whatever keeps it from committing (an error, a conflict, a
        cancellation) drops the cache, and the next batch reads the log again.

        With ``previous`` (a batch whose transaction is under way) its events count as
        stored, and this transaction commits only once it committed as judged."""
        rejections = [(item, item.rejection(self._group_id)) for item in rejected]
        envelopes = [entry.envelope for entry in entries] + [r for _, r in rejections]
        projecting = False

        async def judged() -> None:
            # the next batch may judge now, on these histories; this one appends (and
            # takes the append lock) only once the previous one committed as judged
            if batch is not None:
                batch.judged.set()
            if previous is not None:
                await _committed_as_judged(previous)

        try:
            async with self._pool.acquire() as connection, connection.transaction():
                uow = PostgresRulesUnitOfWork(
                    connection,
                    self._cache,
                    pending=previous.ids if previous is not None else frozenset(),
                    before_append=judged,
                )
                try:
                    outcome = await handle_batch(
                        envelopes, uow, self._packs, incremental=self._incremental
                    )
                    await uow.record_dead_letters(
                        [(i.event_id, r, i.reason) for i, r in rejections if i.event_id]
                    )
                    if positions is not None:
                        await uow.record_positions(self._group_id, positions)
                    applied = 0
                    if self._projection is not None:
                        # the subject state moves with the facts, in the same commit
                        projecting = True
                        applied = await self._projection.catch_up_in(
                            connection, limit=PROJECTION_CATCH_UP
                        )
                    if previous is not None:
                        await _committed_as_judged(previous)
                except (
                    eventstore.EventIdConflict,
                    eventstore.StreamVersionConflict,
                    PreviousBatchFailed,
                ):
                    raise
                except Exception as error:
                    if is_transient(error):
                        raise
                    raise RecordFailure(error, "projected" if projecting else uow.step) from error
            return outcome, applied >= PROJECTION_CATCH_UP
        except BaseException:
            self._cache.clear()
            raise


async def _committed_as_judged(previous: _InFlight) -> None:
    """Wait for the previous batch; raise :class:`PreviousBatchFailed` unless it committed
    whole at its first try (what this batch was judged on)."""
    try:
        clean = await asyncio.shield(previous.task)
    except BaseException as error:
        raise PreviousBatchFailed(
            "the batch before this one did not commit", committed=False
        ) from error
    if not clean:
        raise PreviousBatchFailed(
            "the batch before this one was stored after a retry", committed=True
        )


def _retrieved(task: asyncio.Task[bool]) -> None:
    """A batch's failure is logged and rewound where it happens; one no handler waited
    for (the last before a pause) is not reported again as never retrieved."""
    if not task.cancelled():
        task.exception()


def supervised(
    handle: Callable[[KafkaMessage], Awaitable[None]], progress: Progress
) -> Callable[[KafkaMessage], Awaitable[None]]:
    """The facts subscriber's handler: each batch one step of ``progress``. The consumer
    commits each batch's offsets and seeks back after a failure itself (a pipelined
    batch's failure rewinds to an earlier batch than the one at hand), so nothing is
    acknowledged or rewound here."""

    async def handler(message: KafkaMessage) -> None:
        with progress.step():
            await handle(message)

    return handler


def _seek(consumer: Any, offsets: Offsets) -> None:
    """Send the consumer back to these offsets (the next fetch starts there)."""
    if consumer is None:
        return
    for (topic, partition), offset in offsets.items():
        try:
            consumer.seek(TopicPartition(topic, partition), offset)
        except (KafkaError, AssertionError, ValueError) as error:  # no longer assigned
            log.warning("rules.rewind_skipped", topic=topic, partition=partition, error=repr(error))


async def _commit_offsets(consumer: Any, positions: Offsets, progress: Progress | None) -> None:
    """Kafka's committed offsets for this batch's records only (a hint: the positions
    stored with the data are what the consumer starts from), bounded like every commit."""
    if consumer is None or not positions or getattr(consumer, "_closed", False):
        return  # a consumer stopping (the service is): the stored positions are the truth
    offsets = {TopicPartition(topic, part): offset for (topic, part), offset in positions.items()}
    await bounded_commit(consumer.commit(offsets), progress, also=(AssertionError, ValueError))


def first_offsets(records: list[Record]) -> Offsets:
    """The first offset of these records in each partition."""
    first: Offsets = {}
    for record in records:
        key = (record.topic, record.partition)
        first[key] = min(first.get(key, record.offset), record.offset)
    return first


def _without(entries: list[Entry], refused: Iterable[Rejected]) -> list[Entry]:
    """The entries whose records are not among the refused ones."""
    origins = {item.record.origin for item in refused}
    return [entry for entry in entries if entry.record.origin not in origins]


def _processing_order(envelope: Envelope) -> int:
    return 0 if envelope.type == SubjectEnrolled.event_type else 1


def next_positions(records: list[Record]) -> dict[tuple[str, int], int]:
    """The next offset to consume in each partition once these records are stored."""
    positions: dict[tuple[str, int], int] = {}
    for record in records:
        key = (record.topic, record.partition)
        positions[key] = max(positions.get(key, 0), record.offset + 1)
    return positions


async def undecoded(message: StreamMessage[Any]) -> None:
    """FastStream's decoder for the facts subscriber: leaves the bodies as they are."""
    return None
