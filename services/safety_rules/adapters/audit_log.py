"""The audit log on a connection of its own, for the command-line tools that read it once
(``vigil rules explain``, ``vigil rules simulate``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from shared.eventstore import EventStore, PostgresEventStore


@asynccontextmanager
async def connected_event_store(dsn: str) -> AsyncIterator[EventStore]:
    """The event store on one new connection to ``dsn``, closed on leaving."""
    connection = await asyncpg.connect(dsn)
    try:
        yield PostgresEventStore(connection)
    finally:
        await connection.close()
