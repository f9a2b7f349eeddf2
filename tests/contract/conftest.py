"""Fixtures of the contract suites: one port, every implementation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.notifier.adapters.in_memory import InMemoryNotifierUnitOfWork
from services.notifier.adapters.unit_of_work import PostgresNotifierUnitOfWork
from services.notifier.handlers.unit_of_work import NotifierUnitOfWork
from shared.db.pool import create_pool


@pytest.fixture(params=["in-memory", pytest.param("postgresql", marks=pytest.mark.integration)])
def notifier_database(request: pytest.FixtureRequest) -> str | None:
    """Where the notifier's unit of work keeps things: None in memory, else the DSN of a
    PostgreSQL database private to the test (the fixture the integration tests use)."""
    if request.param == "in-memory":
        return None
    dsn: str = request.getfixturevalue("fresh_dsn")
    return dsn


@pytest.fixture
async def notifier_unit_of_work(
    notifier_database: str | None,
) -> AsyncIterator[NotifierUnitOfWork]:
    """The notifier's unit of work, once per implementation."""
    if notifier_database is None:
        yield InMemoryNotifierUnitOfWork()
        return
    pool = await create_pool(notifier_database)
    try:
        yield PostgresNotifierUnitOfWork(pool)
    finally:
        await pool.close()
