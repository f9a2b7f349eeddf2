"""The event store as functions of a connection: the same as
:class:`~shared.eventstore.postgres.PostgresEventStore` (which they delegate to), for the
many callers that append or read in a transaction they already hold."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime

import asyncpg

from shared.eventstore.postgres import PostgresEventStore
from shared.eventstore.records import Appended, NewEvent, PayloadEvent, StoredEvent


async def append(
    connection: asyncpg.Connection,
    events: Sequence[NewEvent],
    *,
    expected_versions: Mapping[str, int] | None = None,
    recorded_at: datetime | None = None,
) -> list[Appended]:
    """Append a batch inside the caller's transaction (see :meth:`PostgresEventStore.append`)."""
    return await PostgresEventStore(connection).append(
        events, expected_versions=expected_versions, recorded_at=recorded_at
    )


async def read_stream(
    connection: asyncpg.Connection, stream_id: str, *, after_version: int = 0
) -> list[StoredEvent]:
    """A stream's events in version order."""
    return await PostgresEventStore(connection).read_stream(stream_id, after_version=after_version)


async def read_all(
    connection: asyncpg.Connection, *, after_position: int = 0, limit: int = 1000
) -> list[StoredEvent]:
    """Up to ``limit`` events after a position, in position order (catch-up reading)."""
    return await PostgresEventStore(connection).read_all(after_position=after_position, limit=limit)


async def read_payloads(
    connection: asyncpg.Connection, *, after_position: int = 0, limit: int = 1000
) -> list[PayloadEvent]:
    """Like :func:`read_all`, but only what projections use of each event."""
    return await PostgresEventStore(connection).read_payloads(
        after_position=after_position, limit=limit
    )


async def stored_ids(
    connection: asyncpg.Connection, event_ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of these events the log holds already (read without the append lock)."""
    return await PostgresEventStore(connection).stored_ids(event_ids)


async def head(connection: asyncpg.Connection) -> tuple[int, bytes]:
    """The last position and its hash; (0, genesis) for an empty log."""
    return await PostgresEventStore(connection).head()
