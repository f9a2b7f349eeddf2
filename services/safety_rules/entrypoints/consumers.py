"""The rules service's Kafka consumers: they translate records and delegate to handlers."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Iterable
from typing import Any

import asyncpg
import structlog
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
from shared.projections import ProjectionRunner
from shared.rejections import keep_raw

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

    def __init__(self) -> None:
        self._failures = 0

    async def failed(self, error: BaseException) -> None:
        self._failures += 1
        delay = min(0.2 * 2**self._failures, 10.0)
        log.error("rules.batch_failed", error=repr(error), retry_in_seconds=delay)
        await asyncio.sleep(delay)

    def succeeded(self) -> None:
        self._failures = 0


async def publish_dead_letters(
    broker: KafkaBroker, pool: asyncpg.Pool, rejected: list[Rejected], by: str
) -> None:
    """Keep refused records and dead-letter them (see :func:`shared.batch_consumer.dead_letter`)."""
    await dead_letter(broker, pool, rejected, rejected_by=by, service="rules")


class FactsConsumer:
    """Per batch: one transaction that stores and judges the events, records what was
    refused and moves the consumer positions.

    Kafka offsets are committed by FastStream after this returns, i.e. after the database
    commit. A database or broker that is away rewinds the batch, retried with back-off. A
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
        began = time.perf_counter()
        try:
            # raw dead letters are kept before their InputRejected refers to them
            await keep_raw(self._pool, raw)
            outcome, projection_behind = await self._store(entries, rejected, positions)
        except Exception as error:
            if is_transient(error):
                await self._backoff.failed(error)
            else:
                # not an outage, and not one record either: say so loudly
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

    async def _store(
        self,
        entries: list[Entry],
        rejected: list[Rejected],
        positions: dict[tuple[str, int], int],
    ) -> tuple[BatchOutcome, bool]:
        """The batch stored whole; or, when its data makes it fail, split until each
        record that fails is found, and stored without them."""
        try:
            return await self._commit_resolving(entries, rejected, positions)
        except RecordFailure as failure:
            log.warning("rules.batch_split", records=len(entries), reason=failure.reason)
        # a failure the batch's records do not cause (the projection, say) is no reason
        # to refuse them: it is an error to retry, as any other
        await self._commit_resolving([], [], None)
        poisoned = await self._dead_lettered_before(entries)
        poisoned += await self._isolate(_without(entries, (item for item, _ in poisoned)))
        for item, step in poisoned:
            metrics.POISON_RECORDS.labels(step=step).inc()
            log.warning(
                "rules.poison_record",
                origin=item.record.origin,
                event_id=str(item.event_id),
                reason=item.reason,
            )
        refused = [item for item, _ in poisoned]
        # the parts stored while splitting may have raised signals: the relay is told now
        self._on_commit(True, True)
        return await self._commit_resolving(
            _without(entries, refused), [*rejected, *refused], positions
        )

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
    ) -> tuple[BatchOutcome, bool]:
        """The batch's one transaction; returns its outcome and whether the subject state
        was left behind. The batch folds its events into the cached histories before it
        commits, so whatever keeps it from committing (an error, a conflict, a
        cancellation) drops the cache, and the next batch reads the log again."""
        rejections = [(item, item.rejection(self._group_id)) for item in rejected]
        envelopes = [entry.envelope for entry in entries] + [r for _, r in rejections]
        projecting = False
        try:
            async with self._pool.acquire() as connection, connection.transaction():
                uow = PostgresRulesUnitOfWork(connection, self._cache)
                try:
                    outcome = await handle_batch(envelopes, uow, self._packs)
                    await uow.record_dead_letters(
                        [(i.event_id, r, i.reason) for i, r in rejections if i.event_id]
                    )
                    if positions is not None:
                        await uow.record_positions(self._group_id, positions)
                    if self._projection is None:
                        return outcome, False
                    # the subject state moves with the facts, in the same commit
                    projecting = True
                    applied = await self._projection.catch_up_in(
                        connection, limit=PROJECTION_CATCH_UP
                    )
                except (eventstore.EventIdConflict, eventstore.StreamVersionConflict):
                    raise
                except Exception as error:
                    if is_transient(error):
                        raise
                    raise RecordFailure(error, "projected" if projecting else uow.step) from error
            return outcome, applied >= PROJECTION_CATCH_UP
        except BaseException:
            self._cache.clear()
            raise


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
