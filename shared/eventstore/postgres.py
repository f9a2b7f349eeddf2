"""The event store on PostgreSQL: the only code that reads the ``events`` table (with the
audit tools beside it: verify, export, anchors).

:class:`PostgresEventStore` is bound to a connection and runs in whatever transaction the
caller holds, so an append and the caller's own writes commit or roll back together.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

import asyncpg
import orjson

from shared.events import SafetySignalRaised
from shared.eventstore.canonical import GENESIS_HASH
from shared.eventstore.postgres_append import append_batch
from shared.eventstore.records import (
    SIGNAL_EVENT_PREFIX,
    Appended,
    Backlog,
    DueEvent,
    EventSelection,
    LoggedEvent,
    NewEvent,
    PayloadEvent,
    PayloadMatch,
    StoredEvent,
)

_STORED_COLUMNS = (
    "position, event_id, stream_id, stream_version, type, schema_version, study_id, "
    "subject_id, clinical_time, recorded_at, source, envelope_json, payload_json, prev_hash, "
    "hash"
)
_SELECT = f"SELECT {_STORED_COLUMNS} FROM events"
_LOGGED_COLUMNS = (
    "position, event_id, stream_id, stream_version, type, study_id, subject_id, recorded_at, "
    "payload_json"
)
_SELECT_LOGGED = f"SELECT {_LOGGED_COLUMNS} FROM events"
# what may stand between quotes in SQL text: our own constants, nothing to escape
_PLAIN = re.compile(r"[A-Za-z0-9._/-]+")


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


def _logged(row: asyncpg.Record) -> LoggedEvent:
    return LoggedEvent(
        position=row["position"],
        event_id=row["event_id"],
        stream_id=row["stream_id"],
        stream_version=row["stream_version"],
        type=row["type"],
        study_id=row["study_id"],
        subject_id=row["subject_id"],
        recorded_at=row["recorded_at"],
        payload=orjson.loads(row["payload_json"]),
    )


def _plain(value: str) -> str:
    if not _PLAIN.fullmatch(value):
        raise ValueError(f"{value!r} is not a plain name: it cannot be written into SQL")
    return value


def _literal(values: Iterable[str]) -> str:
    return "(" + ", ".join(f"'{_plain(value)}'" for value in values) + ")"


def selection_sql(selection: EventSelection) -> str:
    """The selection as an SQL condition on ``events``, its values written as literals:
    only then can the planner prove that the condition implies a partial index's (the
    index must be created with this very text)."""
    condition = f"type IN {_literal(selection.types)}"
    if selection.payload_type is None:
        return f"({condition})"
    return (
        f"({condition} OR (type = '{_plain(selection.payload_type)}' "
        f"AND payload ->> '{_plain(selection.payload_field)}' "
        f"IN {_literal(selection.payload_values)}))"
    )


def match_sql(match: PayloadMatch, values: int) -> str:
    """The match as an SQL condition on ``events``: its types and field written as
    literals (so that a partial index on the field for the type can serve it), its values
    the query's parameter number ``values``."""
    return (
        f"(type IN {_literal(match.types)} "
        f"AND payload ->> '{_plain(match.field)}' = ANY(${values}::text[]))"
    )


def read_matching_sql(match: PayloadMatch) -> str:
    """The query :meth:`PostgresEventStore.read_matching` runs ($1 the match's values),
    for a test to see its plan."""
    return f"{_SELECT_LOGGED} WHERE {match_sql(match, 1)} ORDER BY position"


def read_latest_of_type_sql(event_type: str) -> str:
    """The query :meth:`PostgresEventStore.read_latest_of_type` runs ($1 the studies, $2
    the limit), the type a literal so that a partial index on (study_id, position) for
    the type serves it; for a test to see its plan."""
    return (
        f"{_SELECT_LOGGED} WHERE type = '{_plain(event_type)}' AND study_id = ANY($1::text[]) "
        "ORDER BY position DESC LIMIT $2"
    )


def stored_event_sql(event_id_column: str) -> str:
    """An SQL condition, for another table's query, that the event whose id is in
    ``event_id_column`` (a column name, never a value) is in the audit log: how ingest's
    receipt store knows an owed event is settled without naming the events table."""
    if not event_id_column.replace(".", "").replace("_", "").isalnum():
        raise ValueError("event_id_column must be a column name")
    return f"EXISTS (SELECT 1 FROM events e WHERE e.event_id = {event_id_column})"


def read_selected_sql(selection: EventSelection) -> str:
    """The query :meth:`PostgresEventStore.read_selected` runs ($1 after, $2 upto,
    $3 limit, $4 grace seconds), for a test to see its plan."""
    return f"""
    SELECT {_STORED_COLUMNS},
           recorded_at <= clock_timestamp() - make_interval(secs => $4) AS due
    FROM events
    WHERE {selection_sql(selection)} AND position > $1 AND position <= $2
    ORDER BY position
    LIMIT $3"""


class PostgresEventStore:
    """The :class:`~shared.eventstore.ports.EventStore` on a connection (or, for reads
    outside any transaction, a pool)."""

    def __init__(self, connection: asyncpg.Connection | asyncpg.Pool) -> None:
        self._db = connection

    async def append(
        self,
        events: Sequence[NewEvent],
        *,
        expected_versions: Mapping[str, int] | None = None,
        recorded_at: datetime | None = None,
    ) -> list[Appended]:
        """See :func:`shared.eventstore.postgres_append.append_batch`: runs in the caller's
        transaction, which must be open."""
        if isinstance(self._db, asyncpg.Pool):
            raise RuntimeError("append needs a connection in a transaction, not a pool")
        return await append_batch(
            self._db, events, expected_versions=expected_versions, recorded_at=recorded_at
        )

    async def read_stream(self, stream_id: str, *, after_version: int = 0) -> list[StoredEvent]:
        rows = await self._db.fetch(
            f"{_SELECT} WHERE stream_id = $1 AND stream_version > $2 ORDER BY stream_version",
            stream_id,
            after_version,
        )
        return [_stored(row) for row in rows]

    async def read_all(self, *, after_position: int = 0, limit: int = 1000) -> list[StoredEvent]:
        rows = await self._db.fetch(
            f"{_SELECT} WHERE position > $1 ORDER BY position LIMIT $2", after_position, limit
        )
        return [_stored(row) for row in rows]

    async def read_payloads(
        self, *, after_position: int = 0, limit: int = 1000
    ) -> list[PayloadEvent]:
        rows = await self._db.fetch(
            "SELECT position, event_id, type, study_id, subject_id, recorded_at, payload_json "
            "FROM events WHERE position > $1 ORDER BY position LIMIT $2",
            after_position,
            limit,
        )
        return [
            PayloadEvent(
                position=row["position"],
                event_id=row["event_id"],
                type=row["type"],
                study_id=row["study_id"],
                subject_id=row["subject_id"],
                recorded_at=row["recorded_at"],
                payload=orjson.loads(row["payload_json"]),
            )
            for row in rows
        ]

    async def stored_ids(self, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Read without the append lock: an append may store one of the others the next
        moment."""
        rows = await self._db.fetch(
            "SELECT event_id FROM events WHERE event_id = ANY($1::uuid[])", list(event_ids)
        )
        return {row["event_id"] for row in rows}

    async def head(self) -> tuple[int, bytes]:
        row = await self._db.fetchrow(
            "SELECT position, hash FROM events ORDER BY position DESC LIMIT 1"
        )
        if row is None:
            return 0, GENESIS_HASH
        return row["position"], bytes(row["hash"])

    async def read_events(self, event_ids: Iterable[uuid.UUID]) -> list[StoredEvent]:
        rows = await self._db.fetch(
            f"{_SELECT} WHERE event_id = ANY($1::uuid[]) ORDER BY position", list(event_ids)
        )
        return [_stored(row) for row in rows]

    async def find_event(self, event_id: uuid.UUID, event_type: str) -> StoredEvent | None:
        row = await self._db.fetchrow(
            f"{_SELECT} WHERE event_id = $1 AND type = $2", event_id, event_type
        )
        return None if row is None else _stored(row)

    async def positions_of(self, event_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
        rows = await self._db.fetch(
            "SELECT event_id, position FROM events WHERE event_id = ANY($1::uuid[])",
            list(event_ids),
        )
        return {row["event_id"]: row["position"] for row in rows}

    async def existing_streams(self, stream_ids: Iterable[str]) -> set[str]:
        rows = await self._db.fetch(
            "SELECT DISTINCT stream_id FROM events WHERE stream_id = ANY($1::text[])",
            list(stream_ids),
        )
        return {row["stream_id"] for row in rows}

    async def read_streams_after(self, after_versions: Mapping[str, int]) -> list[LoggedEvent]:
        """In one query, however many streams."""
        if not after_versions:
            return []
        rows = await self._db.fetch(
            """SELECT e.position, e.event_id, e.stream_id, e.stream_version, e.type, e.study_id,
                      e.subject_id, e.recorded_at, e.payload_json
               FROM unnest($1::text[], $2::bigint[]) AS s(stream_id, after_version)
               JOIN events e ON e.stream_id = s.stream_id AND e.stream_version > s.after_version
               ORDER BY e.stream_id, e.stream_version""",
            list(after_versions),
            list(after_versions.values()),
        )
        return [_logged(row) for row in rows]

    async def read_streams_of_types(
        self, stream_ids: Iterable[str], types: Iterable[str]
    ) -> list[LoggedEvent]:
        rows = await self._db.fetch(
            f"{_SELECT_LOGGED} WHERE stream_id = ANY($1::text[]) AND type = ANY($2::text[]) "
            "ORDER BY position",
            list(stream_ids),
            list(types),
        )
        return [_logged(row) for row in rows]

    async def read_types_between(
        self, types: Iterable[str], *, after: int, upto: int
    ) -> list[LoggedEvent]:
        rows = await self._db.fetch(
            f"{_SELECT_LOGGED} WHERE position > $1 AND position <= $2 "
            "AND type = ANY($3::text[]) ORDER BY position",
            after,
            upto,
            list(types),
        )
        return [_logged(row) for row in rows]

    async def read_study_subject_events(
        self, study_id: str, types: Iterable[str]
    ) -> list[LoggedEvent]:
        rows = await self._db.fetch(
            f"{_SELECT_LOGGED} WHERE study_id = $1 AND stream_id LIKE 'subject-%' "
            "AND type = ANY($2::text[]) ORDER BY stream_id, stream_version",
            study_id,
            list(types),
        )
        return [_logged(row) for row in rows]

    async def read_subject_events(
        self, study_id: str, subject_id: str, types: Iterable[str]
    ) -> list[LoggedEvent]:
        """By the index on (study_id, subject_id, position)."""
        rows = await self._db.fetch(
            f"{_SELECT_LOGGED} WHERE study_id = $1 AND subject_id = $2 "
            "AND type = ANY($3::text[]) ORDER BY position",
            study_id,
            subject_id,
            list(types),
        )
        return [_logged(row) for row in rows]

    async def read_study_events(
        self, study_id: str, types: Iterable[str], *, matching: Iterable[PayloadMatch] = ()
    ) -> list[LoggedEvent]:
        matches = list(matching)
        selected = " ".join(f"OR {match_sql(m, 3 + n)}" for n, m in enumerate(matches))
        rows = await self._db.fetch(
            f"{_SELECT_LOGGED} WHERE study_id = $1 AND subject_id IS NOT NULL "
            f"AND (type = ANY($2::text[]) {selected}) ORDER BY position",
            study_id,
            list(types),
            *(list(m.values) for m in matches),
        )
        return [_logged(row) for row in rows]

    async def read_matching(self, match: PayloadMatch) -> list[LoggedEvent]:
        rows = await self._db.fetch(read_matching_sql(match), list(match.values))
        return [_logged(row) for row in rows]

    async def read_latest_of_type(
        self, event_type: str, study_ids: Iterable[str], *, limit: int
    ) -> list[LoggedEvent]:
        rows = await self._db.fetch(read_latest_of_type_sql(event_type), list(study_ids), limit)
        return [_logged(row) for row in rows]

    async def read_signal_history(self, stream_id: str, signal_id: uuid.UUID) -> list[LoggedEvent]:
        rows = await self._db.fetch(
            f"{_SELECT_LOGGED} WHERE stream_id = $1 AND type LIKE '{SIGNAL_EVENT_PREFIX}%' "
            "AND type <> $2 AND payload->>'signal_id' = $3 ORDER BY position",
            stream_id,
            SafetySignalRaised.event_type,
            str(signal_id),
        )
        return [_logged(row) for row in rows]

    async def read_open_streams(
        self,
        stream_prefix: str,
        types: Iterable[str],
        *,
        turning_types: Iterable[str],
        closing_types: Iterable[str],
    ) -> list[LoggedEvent]:
        # the prefix as a literal, so that the planner reads the streams by index range ('_'
        # escaped: it matches itself only)
        prefix = _plain(stream_prefix).replace("_", "\\_")
        streams = f"stream_id LIKE '{prefix}%'"
        rows = await self._db.fetch(
            f"""WITH last_turn AS (
                   SELECT DISTINCT ON (stream_id) stream_id, type FROM events
                   WHERE {streams} AND type = ANY($3::text[])
                   ORDER BY stream_id, stream_version DESC)
               {_SELECT_LOGGED}
               WHERE {streams} AND type = ANY($1::text[])
                 AND stream_id NOT IN (SELECT stream_id FROM last_turn
                                       WHERE type = ANY($2::text[]))
               ORDER BY stream_id, stream_version""",
            list(types),
            list(closing_types),
            list(turning_types),
        )
        return [_logged(row) for row in rows]

    async def last_of_type(self, stream_id: str, event_type: str) -> LoggedEvent | None:
        row = await self._db.fetchrow(
            f"{_SELECT_LOGGED} WHERE stream_id = $1 AND type = $2 "
            "ORDER BY stream_version DESC LIMIT 1",
            stream_id,
            event_type,
        )
        return None if row is None else _logged(row)

    async def last_of_type_in_streams(
        self, stream_ids: Iterable[str], event_type: str
    ) -> dict[str, LoggedEvent]:
        """Each stream read backwards from its last version, to the first event of the type."""
        rows = await self._db.fetch(
            f"""SELECT last.* FROM unnest($1::text[]) AS s(stream_id)
               CROSS JOIN LATERAL ({_SELECT_LOGGED}
                   WHERE stream_id = s.stream_id AND type = $2
                   ORDER BY stream_version DESC LIMIT 1) AS last""",
            list(dict.fromkeys(stream_ids)),
            event_type,
        )
        return {row["stream_id"]: _logged(row) for row in rows}

    async def count_of_type(self, stream_id: str, event_type: str, *, after_version: int) -> int:
        count: int = await self._db.fetchval(
            "SELECT count(*) FROM events WHERE stream_id = $1 AND type = $2 "
            "AND stream_version > $3",
            stream_id,
            event_type,
            after_version,
        )
        return count

    async def read_selected(
        self,
        selection: EventSelection,
        *,
        after: int,
        upto: int,
        limit: int,
        grace_seconds: float,
    ) -> list[DueEvent]:
        """Grace is measured by the database clock."""
        rows = await self._db.fetch(
            read_selected_sql(selection), after, upto, limit, float(grace_seconds)
        )
        return [DueEvent(_stored(row), row["due"]) for row in rows]

    async def selected_backlog(self, selection: EventSelection, *, after: int) -> Backlog:
        row = await self._db.fetchrow(
            f"""SELECT count(*) AS events,
                       extract(epoch FROM clock_timestamp() - min(recorded_at))::float8 AS age
                FROM events
                WHERE {selection_sql(selection)} AND position > $1""",
            after,
        )
        age: float | None = row["age"]
        return Backlog(row["events"], None if age is None else max(age, 0.0))


async def store_id(connection: asyncpg.Connection) -> uuid.UUID:
    """The identity of this event store (anchors are kept per store)."""
    value: uuid.UUID = await connection.fetchval("SELECT store_id FROM event_store_identity")
    return value


async def role_may_update_log(connection: asyncpg.Connection | asyncpg.Pool) -> bool:
    """Whether the connected role holds UPDATE on the log (triggers still refuse changes,
    but a service should not run as such a role)."""
    may: bool = await connection.fetchval("SELECT has_table_privilege('events', 'UPDATE')")
    return may
