"""Appending to and reading from the event store (asyncpg).

Appends are serialised by one transaction-scoped advisory lock: the appender reads the
head, assigns gapless positions and chains the hashes, and the lock is released only when
its transaction ends. So positions become visible in order: a catch-up reader that has seen
position N never later finds a committed position below N it did not see.
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import asyncpg.pool
import orjson

from shared.events import Envelope, schema_version
from shared.eventstore.canonical import (
    GENESIS_HASH,
    canonical_bytes,
    chain_hash,
    epoch_micros,
    json_text,
    subject_columns,
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
_SELECT = (
    "SELECT position, event_id, stream_id, stream_version, type, schema_version, study_id, "
    "subject_id, clinical_time, recorded_at, source, envelope_json, payload_json, prev_hash, "
    "hash FROM events"
)


class EventIdConflict(Exception):
    """An event id arrived again with different content: one of the two is not that event."""

    def __init__(self, event_id: uuid.UUID, position: int | None) -> None:
        where = f"stored at position {position}" if position else "earlier in the same batch"
        super().__init__(f"event {event_id} is already {where} with different content")
        self.event_id = event_id
        self.position = position


class StreamVersionConflict(Exception):
    """A writer expected a stream at one version and found it at another (a concurrent write)."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream_id!r} is at version {actual}, expected {expected}")
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class NewEvent:
    """An event to append; ``expected_version`` is the stream's version before this event
    (0 for a stream that must not exist yet), or None for no check."""

    envelope: Envelope
    expected_version: int | None = None


@dataclass(frozen=True)
class Appended:
    """Where an event is: ``new`` is False when it was stored before (an idempotent no-op)."""

    event_id: uuid.UUID
    position: int
    stream_id: str
    stream_version: int
    new: bool


@dataclass(frozen=True)
class StoredEvent:
    """One row of the log."""

    position: int
    event_id: uuid.UUID
    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    study_id: str | None
    subject_id: str | None
    clinical_time: datetime | None
    recorded_at: datetime
    source: str
    envelope: dict[str, Any]
    payload: dict[str, Any]
    envelope_text: str
    payload_text: str
    prev_hash: bytes
    hash: bytes

    def to_envelope(self) -> Envelope:
        """The event as it was published."""
        return Envelope.model_validate({**self.envelope, "data": self.payload})

    def canonical(self) -> bytes:
        """The bytes the row's hash covers."""
        recorded_us = epoch_micros(self.recorded_at)
        assert recorded_us is not None
        return canonical_bytes(
            position=self.position,
            event_id=str(self.event_id),
            stream_id=self.stream_id,
            stream_version=self.stream_version,
            type=self.type,
            schema_version=self.schema_version,
            clinical_time_us=epoch_micros(self.clinical_time),
            recorded_at_us=recorded_us,
            source=self.source,
            envelope_text=self.envelope_text,
            payload_text=self.payload_text,
        )


@dataclass(frozen=True)
class PayloadEvent:
    """What a projection reads of a row: where it is, its type, subject and payload; not
    the envelope and hashes, which only the audit tools need."""

    position: int
    event_id: uuid.UUID
    type: str
    study_id: str | None
    subject_id: str | None
    payload: dict[str, Any]


def _stored(row: asyncpg.Record) -> StoredEvent:
    return StoredEvent(
        position=row["position"],
        event_id=row["event_id"],
        stream_id=row["stream_id"],
        stream_version=row["stream_version"],
        type=row["type"],
        schema_version=row["schema_version"],
        study_id=row["study_id"],
        subject_id=row["subject_id"],
        clinical_time=row["clinical_time"],
        recorded_at=row["recorded_at"],
        source=row["source"],
        envelope=orjson.loads(row["envelope_json"]),
        payload=orjson.loads(row["payload_json"]),
        envelope_text=row["envelope_json"],
        payload_text=row["payload_json"],
        prev_hash=bytes(row["prev_hash"]),
        hash=bytes(row["hash"]),
    )


async def append(
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
    texts = [(e.attributes_json(), json_text(e.data)) for e in envelopes]
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
    recorded_us = epoch_micros(recorded_at)
    assert recorded_us is not None
    position = top["position"] or 0
    prev_hash = bytes(top["hash"]) if top["hash"] is not None else GENESIS_HASH
    versions = await _stream_versions(
        connection,
        {payload.stream_id for payload in payloads} | expected_versions.keys(),
        (position, prev_hash),
    )
    for stream_id, expected in expected_versions.items():
        if versions.get(stream_id, 0) != expected:
            raise StreamVersionConflict(stream_id, expected, versions.get(stream_id, 0))

    results: list[Appended] = []
    records: list[tuple[Any, ...]] = []
    in_batch: dict[uuid.UUID, tuple[Appended, str, str]] = {}
    for event, envelope, payload, (envelope_text, payload_text) in zip(
        events, envelopes, payloads, texts, strict=True
    ):
        if (earlier := stored.get(envelope.id)) is not None:
            if earlier["type"] != envelope.type or earlier["payload_json"] != payload_text:
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
            if same[1] != envelope.type or same[2] != payload_text:
                raise EventIdConflict(envelope.id, None)
            results.append(same[0])
            continue
        stream_id = payload.stream_id
        current = versions.get(stream_id, 0)
        if event.expected_version is not None and event.expected_version != current:
            raise StreamVersionConflict(stream_id, event.expected_version, current)
        position += 1
        version = versions[stream_id] = current + 1
        clinical_time = payload.clinical_time
        event_type = envelope.type
        version_number = schema_version(event_type)
        canonical = canonical_bytes(
            position=position,
            event_id=str(envelope.id),
            stream_id=stream_id,
            stream_version=version,
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
        records.append(
            (
                position,
                envelope.id,
                stream_id,
                version,
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
        )
        prev_hash = row_hash
        appended = Appended(envelope.id, position, stream_id, version, new=True)
        in_batch[envelope.id] = (appended, event_type, payload_text)
        results.append(appended)
    if records:
        await connection.copy_records_to_table("events", records=records, columns=COLUMNS)
        if len(versions) <= _MAX_KNOWN_STREAMS:
            _VERSIONS[_underlying(connection)] = _KnownVersions((position, prev_hash), versions)
        else:
            _VERSIONS.pop(_underlying(connection), None)
    return results


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


async def read_stream(
    connection: asyncpg.Connection, stream_id: str, *, after_version: int = 0
) -> list[StoredEvent]:
    """A stream's events in version order."""
    rows = await connection.fetch(
        f"{_SELECT} WHERE stream_id = $1 AND stream_version > $2 ORDER BY stream_version",
        stream_id,
        after_version,
    )
    return [_stored(row) for row in rows]


async def read_all(
    connection: asyncpg.Connection, *, after_position: int = 0, limit: int = 1000
) -> list[StoredEvent]:
    """Up to ``limit`` events after a position, in position order (catch-up reading)."""
    rows = await connection.fetch(
        f"{_SELECT} WHERE position > $1 ORDER BY position LIMIT $2", after_position, limit
    )
    return [_stored(row) for row in rows]


async def read_payloads(
    connection: asyncpg.Connection, *, after_position: int = 0, limit: int = 1000
) -> list[PayloadEvent]:
    """Like :func:`read_all`, but only what projections use of each event."""
    rows = await connection.fetch(
        "SELECT position, event_id, type, study_id, subject_id, payload_json FROM events "
        "WHERE position > $1 ORDER BY position LIMIT $2",
        after_position,
        limit,
    )
    return [
        PayloadEvent(
            row["position"],
            row["event_id"],
            row["type"],
            row["study_id"],
            row["subject_id"],
            orjson.loads(row["payload_json"]),
        )
        for row in rows
    ]


async def stored_ids(
    connection: asyncpg.Connection, event_ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of these events the log holds already (read without the append lock: an
    append may store one of the others the next moment)."""
    rows = await connection.fetch(
        "SELECT event_id FROM events WHERE event_id = ANY($1::uuid[])", list(event_ids)
    )
    return {row["event_id"] for row in rows}


async def head(connection: asyncpg.Connection) -> tuple[int, bytes]:
    """The last position and its hash; (0, genesis) for an empty log."""
    row = await connection.fetchrow(
        "SELECT position, hash FROM events ORDER BY position DESC LIMIT 1"
    )
    if row is None:
        return 0, GENESIS_HASH
    return row["position"], bytes(row["hash"])


async def store_id(connection: asyncpg.Connection) -> uuid.UUID:
    """The identity of this event store (anchors are kept per store)."""
    value: uuid.UUID = await connection.fetchval("SELECT store_id FROM event_store_identity")
    return value
