"""The rules service's unit of work on PostgreSQL: one transaction per batch."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Literal

import asyncpg

from services.safety_rules.domain.history import SubjectHistory
from shared import eventstore
from shared.events import Envelope, subject_stream

SubjectKey = tuple[str, str]


class HistoryCache:
    """Subjects' histories kept between batches, so a batch reads only what is new in each
    stream. Bounded (least recently used go first); cleared when a batch fails, because a
    rolled-back batch may have been folded in."""

    def __init__(self, capacity: int = 20_000) -> None:
        self._capacity = capacity
        self._histories: OrderedDict[SubjectKey, SubjectHistory] = OrderedDict()

    def get(self, key: SubjectKey) -> SubjectHistory:
        history = self._histories.pop(key, None) or SubjectHistory(*key)
        self._histories[key] = history
        while len(self._histories) > self._capacity:
            self._histories.popitem(last=False)
        return history

    def clear(self) -> None:
        self._histories.clear()


class PostgresRulesUnitOfWork:
    """Runs on a connection inside the caller's transaction.

    ``pending``: events a batch still committing stores (its transaction is not visible
    here yet): they count as stored. ``before_append``: awaited before the batch appends
    (the consumer's pipeline lets the next batch judge then, and waits for the previous
    one's commit)."""

    def __init__(
        self,
        connection: asyncpg.Connection,
        cache: HistoryCache | None = None,
        *,
        pending: frozenset[uuid.UUID] = frozenset(),
        before_append: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._connection = connection
        self._store = eventstore.PostgresEventStore(connection)
        self._cache = cache if cache is not None else HistoryCache()
        self._pending = pending
        self._before_append = before_append
        # how far the batch got, for the reason a failing record is dead-lettered with
        self.step: Literal["judged", "stored"] = "judged"

    async def stored(self, event_ids: Sequence[uuid.UUID]) -> tuple[datetime, set[uuid.UUID]]:
        """The database's time now, which the batch is recorded at, and which of these
        events are stored already (read without the append lock)."""
        now: datetime = await self._connection.fetchval("SELECT clock_timestamp()")
        stored = await self._store.stored_ids(event_ids)
        if self._pending:
            stored |= self._pending & set(event_ids)
        return now, stored

    async def append(
        self,
        envelopes: Sequence[Envelope],
        *,
        expected_versions: Mapping[str, int],
        recorded_at: datetime,
    ) -> None:
        if self._before_append is not None:
            await self._before_append()
        self.step = "stored"
        await self._store.append(
            [eventstore.NewEvent(envelope) for envelope in envelopes],
            expected_versions=expected_versions,
            recorded_at=recorded_at,
        )

    async def histories(self, keys: Iterable[SubjectKey]) -> dict[SubjectKey, SubjectHistory]:
        """Each subject's stored history: the cached part, and the rest of its stream read
        in one query."""
        wanted = {key: self._cache.get(key) for key in sorted(set(keys))}
        if not wanted:
            return {}
        streams = {subject_stream(*key): key for key in wanted}
        read = await self._store.read_streams_after(
            {stream: wanted[key].version for stream, key in streams.items()}
        )
        for event in read:
            wanted[streams[event.stream_id]].apply(
                event.type, event.payload, event.event_id, event.recorded_at, event.stream_version
            )
        return wanted

    async def record_positions(self, group_id: str, positions: dict[tuple[str, int], int]) -> None:
        """The next offset to consume per partition, in the batch's transaction."""
        if not positions:
            return
        await self._connection.executemany(
            """INSERT INTO consumer_positions (group_id, topic, partition, next_offset)
               VALUES ($1, $2, $3, $4)
               ON CONFLICT (group_id, topic, partition) DO UPDATE
               SET next_offset = EXCLUDED.next_offset, updated_at = clock_timestamp()""",
            [
                (group_id, topic, partition, offset)
                for (topic, partition), offset in sorted(positions.items())
            ],
        )

    async def record_dead_letters(
        self, rejected: Sequence[tuple[uuid.UUID, Envelope, str]]
    ) -> None:
        """Mark refused events as dead-lettered (event id, its InputRejected, the reason), in
        the batch's transaction: ingest's re-drive then counts them as settled."""
        if not rejected:
            return
        await self._connection.executemany(
            """INSERT INTO dead_lettered_events (event_id, rejection_id, origin, reason)
               VALUES ($1, $2, $3, $4) ON CONFLICT (event_id) DO NOTHING""",
            [
                (event_id, rejection.id, str(rejection.data.get("origin", "")), reason)
                for event_id, rejection, reason in rejected
            ],
        )

    async def dead_lettered(self, event_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        """Which of these events were dead-lettered before, with the reason."""
        rows = await self._connection.fetch(
            "SELECT event_id, reason FROM dead_lettered_events WHERE event_id = ANY($1::uuid[])",
            list(event_ids),
        )
        return {row["event_id"]: row["reason"] for row in rows}

    async def enqueue(self, items: Sequence[tuple[Envelope, str]]) -> None:
        """Outbox entries for the relay, in the batch's transaction."""
        await self._connection.executemany(
            "INSERT INTO outbox (event_id, topic, key, value) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (event_id) DO NOTHING",
            [(e.id, topic, e.key, e.to_json()) for e, topic in items],
        )
