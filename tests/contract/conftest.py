"""Fixtures of the contract suites: each port's implementations, ready to run one suite.

The PostgreSQL ones stand on the session's real server (``fresh_dsn``, a migrated
database private to the test, from ``tests/conftest.py``), like the integration tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime

import asyncpg
import pytest

from services.notifier.adapters.in_memory import InMemoryNotifierUnitOfWork
from services.notifier.adapters.postgres import PostgresNotifierUnitOfWork
from services.notifier.handlers.ports import NotifierUnitOfWork
from shared.db.pool import create_pool
from shared.eventstore import Appended, InMemoryEventStore, NewEvent, PostgresEventStore


class PostgresEventStoreInTransactions(PostgresEventStore):
    """The PostgreSQL store as its callers use it: each append in a transaction of its own,
    so a refused batch is rolled back and the next call finds the log as it was."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        super().__init__(connection)
        self._connection = connection

    async def append(
        self,
        events: Sequence[NewEvent],
        *,
        expected_versions: Mapping[str, int] | None = None,
        recorded_at: datetime | None = None,
    ) -> list[Appended]:
        async with self._connection.transaction():
            return await super().append(
                events, expected_versions=expected_versions, recorded_at=recorded_at
            )


@pytest.fixture
async def postgres_event_store(fresh_dsn: str) -> AsyncIterator[PostgresEventStore]:
    """The PostgreSQL event store on an empty, migrated database."""
    connection = await asyncpg.connect(fresh_dsn)
    try:
        yield PostgresEventStoreInTransactions(connection)
    finally:
        await connection.close()


@pytest.fixture
def in_memory_event_store() -> InMemoryEventStore:
    """The in-memory event store, empty."""
    return InMemoryEventStore()


@pytest.fixture(params=["in-memory", pytest.param("postgresql", marks=pytest.mark.integration)])
def database(request: pytest.FixtureRequest) -> str | None:
    """Where a service's port keeps things, once per implementation: None in memory, else
    the DSN of a PostgreSQL database private to the test (the fixture the integration
    tests use)."""
    if request.param == "in-memory":
        return None
    dsn: str = request.getfixturevalue("fresh_dsn")
    return dsn


@pytest.fixture
async def notifier_unit_of_work(
    database: str | None,
) -> AsyncIterator[NotifierUnitOfWork]:
    """The notifier's unit of work, once per implementation."""
    if database is None:
        yield InMemoryNotifierUnitOfWork()
        return
    pool = await create_pool(database)
    try:
        yield PostgresNotifierUnitOfWork(pool)
    finally:
        await pool.close()
