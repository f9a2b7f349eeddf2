"""Appending to the event store on PostgreSQL (asyncpg): the write path of
:class:`~shared.eventstore.postgres.PostgresEventStore`.

Appends are serialised by one transaction-scoped advisory lock: the appender reads the
head, assigns gapless positions and chains the hashes, and the lock is released only when
its transaction ends. So positions become visible in order: a catch-up reader that has seen
position N never later finds a committed position below N it did not see.
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import asyncpg
import asyncpg.pool

from shared.events import Envelope, schema_version
from shared.eventstore.canonical import (
    GENESIS_HASH,
    canonical_bytes,
    chain_hash,
    epoch_micros,
    json_text,
    subject_columns,
)
from shared.eventstore.records import (
    Appended,
    EventIdConflict,
    NewEvent,
    StreamVersionConflict,
)
from shared.metrics import timed_append

# Advisory lock key of the append path (the insert trigger checks it is held).
APPEND_LOCK = 7_345_002

# The columns of ``events`` an append writes (the jsonb columns are generated).
COLUMNS = (
    "position",
    "event_id",
    "stream_id",
    "stream_version",
    "type",
    "schema_version",
    "study_id",
    "subject_id",
    "clinical_time",
    "recorded_at",
    "source",
    "envelope_json",
    "payload_json",
    "prev_hash",
    "hash",
)


async def append_batch(
    connection: asyncpg.Connection,
    events: Sequence[NewEvent],
    *,
    expected_versions: Mapping[str, int] | None = None,
    recorded_at: datetime | None = None,
) -> list[Appended]:
    """Append a batch, across any streams, inside the caller's transaction.

    Idempotent on event id: an id already stored with the same type and payload is a no-op
    that reports the original position; with different content it raises EventIdConflict.
    A failed ``expected_version``, or a stream of ``expected_versions`` found at another
    version when the batch begins, raises StreamVersionConflict. Either error leaves the
    caller's transaction to be rolled back; nothing of the batch is stored.

    ``recorded_at`` is the time the batch is recorded at; by default the database clock
    under the append lock. A writer that works out what follows from its facts before it
    appends them (and so before it takes the lock) passes the time it took them up at, so
    what it derived from that time matches the record.
    """
    if not events:
        return []
    if not connection.is_in_transaction():
        raise RuntimeError("append must run inside a transaction (the lock lasts until commit)")
    with timed_append(len(events)):
        return await _append(connection, events, expected_versions or {}, recorded_at)


async def _append(
    connection: asyncpg.Connection,
    events: Sequence[NewEvent],
    expected_versions: Mapping[str, int],
    recorded_at: datetime | None,
) -> list[Appended]:
    envelopes = [event.envelope for event in events]
    payloads = [envelope.payload() for envelope in envelopes]
    await connection.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
    stored = {
        row["event_id"]: row
        for row in await connection.fetch(
            "SELECT event_id, position, stream_id, stream_version, type, payload_json "
            "FROM events WHERE event_id = ANY($1::uuid[])",
            [envelope.id for envelope in envelopes],
        )
    }
    top = await connection.fetchrow(
        "SELECT clock_timestamp() AS now, h.position, h.hash FROM (SELECT 1) AS one "
        "LEFT JOIN LATERAL (SELECT position, hash FROM events ORDER BY position DESC LIMIT 1) "
        "AS h ON true"
    )
    recorded_at = recorded_at or top["now"]
    head_position = top["position"] or 0
    head_hash = bytes(top["hash"]) if top["hash"] is not None else GENESIS_HASH
    versions = await _stream_versions(
        connection,
        {payload.stream_id for payload in payloads} | expected_versions.keys(),
        (head_position, head_hash),
    )
    for stream_id, expected in expected_versions.items():
        if versions.get(stream_id, 0) != expected:
            raise StreamVersionConflict(stream_id, expected, versions.get(stream_id, 0))

    # First every check, before anything is written: positions, versions, duplicates. The
    # rows themselves (JSON texts, canonical bytes, chained hashes) are built afterwards,
    # while COPY streams them (see _Rows).
    results: list[Appended] = []
    new: list[_NewRow] = []
    in_batch: dict[uuid.UUID, tuple[Appended, Envelope]] = {}
    position = head_position
    for event, envelope, payload in zip(events, envelopes, payloads, strict=True):
        if (earlier := stored.get(envelope.id)) is not None:
            if earlier["type"] != envelope.type or earlier["payload_json"] != json_text(
                envelope.data
            ):
                raise EventIdConflict(envelope.id, earlier["position"])
            results.append(
                Appended(
                    envelope.id,
                    earlier["position"],
                    earlier["stream_id"],
                    earlier["stream_version"],
                    new=False,
                )
            )
            continue
        if (same := in_batch.get(envelope.id)) is not None:
            first = same[1]
            if first.type != envelope.type or json_text(first.data) != json_text(envelope.data):
                raise EventIdConflict(envelope.id, None)
            # stored by its first copy in this batch: this copy adds nothing
            results.append(replace(same[0], new=False))
            continue
        stream_id = payload.stream_id
        current = versions.get(stream_id, 0)
        if event.expected_version is not None and event.expected_version != current:
            raise StreamVersionConflict(stream_id, event.expected_version, current)
        position += 1
        version = versions[stream_id] = current + 1
        appended = Appended(envelope.id, position, stream_id, version, new=True)
        in_batch[envelope.id] = (appended, envelope)
        results.append(appended)
        new.append((envelope, payload.clinical_time, appended))
    if new:
        rows = _Rows(new, recorded_at, head_hash)
        await connection.copy_records_to_table("events", records=rows, columns=COLUMNS)
        head_now = (position, rows.last_hash)
        if len(versions) <= _MAX_KNOWN_STREAMS:
            _VERSIONS[_underlying(connection)] = _KnownVersions(head_now, versions)
        else:
            _VERSIONS.pop(_underlying(connection), None)
    return results


# One new row before it is built: its envelope, clinical time and place in the log.
_NewRow = tuple[Envelope, datetime | None, Appended]


class _Rows:
    """The new rows of a checked batch, built while COPY streams them.

    asyncpg sends COPY data every 512 kB, so PostgreSQL stores the first rows of a batch
    while the later ones are still being serialised and hashed here. Everything that can
    refuse the batch was checked before: building a row cannot fail. ``last_hash`` is the
    chain's head once every row was built.
    """

    def __init__(self, new: list[_NewRow], recorded_at: datetime, prev_hash: bytes) -> None:
        self._new = new
        self._recorded_at = recorded_at
        self.last_hash = prev_hash

    def __aiter__(self) -> AsyncIterator[tuple[Any, ...]]:
        return self._rows()

    async def _rows(self) -> AsyncIterator[tuple[Any, ...]]:
        recorded_at = self._recorded_at
        recorded_us = epoch_micros(recorded_at)
        assert recorded_us is not None
        prev_hash = self.last_hash
        for envelope, clinical_time, appended in self._new:
            envelope_text = envelope.attributes_json()
            payload_text = json_text(envelope.data)
            event_type = envelope.type
            version_number = schema_version(event_type)
            canonical = canonical_bytes(
                position=appended.position,
                event_id=str(appended.event_id),
                stream_id=appended.stream_id,
                stream_version=appended.stream_version,
                type=event_type,
                schema_version=version_number,
                clinical_time_us=epoch_micros(clinical_time),
                recorded_at_us=recorded_us,
                source=envelope.source,
                envelope_text=envelope_text,
                payload_text=payload_text,
            )
            row_hash = chain_hash(prev_hash, canonical)
            study_id, subject_id = subject_columns(envelope.study_id, envelope.subject)
            yield (
                appended.position,
                appended.event_id,
                appended.stream_id,
                appended.stream_version,
                event_type,
                version_number,
                study_id,
                subject_id,
                clinical_time,
                recorded_at,
                envelope.source,
                envelope_text,
                payload_text,
                prev_hash,
                row_hash,
            )
            prev_hash = self.last_hash = row_hash


_MAX_KNOWN_STREAMS = 100_000


@dataclass
class _KnownVersions:
    """Stream versions this connection last wrote, valid while the head is still its own."""

    head: tuple[int, bytes]
    versions: dict[str, int]


# Per connection: a writer that finds the head where it left it (same position and hash:
# its transaction committed and nobody appended since) knows the versions it wrote, and
# asks the database only about streams it has not seen.
_VERSIONS: weakref.WeakKeyDictionary[asyncpg.Connection, _KnownVersions] = (
    weakref.WeakKeyDictionary()
)


def _underlying(connection: asyncpg.Connection) -> asyncpg.Connection:
    """The connection itself: a pool hands out proxies, which cannot be weakly referenced."""
    if isinstance(connection, asyncpg.pool.PoolConnectionProxy):
        return connection._con
    return connection


async def _stream_versions(
    connection: asyncpg.Connection, streams: set[str], head_now: tuple[int, bytes]
) -> dict[str, int]:
    known = _VERSIONS.get(_underlying(connection))
    cached = known.versions if known is not None and known.head == head_now else {}
    missing = sorted(streams - cached.keys())
    versions = {stream: cached[stream] for stream in streams & cached.keys()}
    if missing:
        rows = await connection.fetch(
            "SELECT s AS stream_id, (SELECT max(stream_version) FROM events "
            "WHERE stream_id = s) AS version FROM unnest($1::text[]) AS s",
            missing,
        )
        versions.update({row["stream_id"]: row["version"] or 0 for row in rows})
    # carry the rest of what is known forward, so the cache keeps its other streams
    return {**cached, **versions}
