"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from shared.db.pool import create_pool
from tests.support.mail import MailCatcher, running_smtp_server


@pytest.fixture
async def pool(fresh_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a database private to the test."""
    pool = await create_pool(fresh_dsn)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def own_smtp() -> Iterator[tuple[int, MailCatcher]]:
    """An SMTP server of the test's own (port and mailbox): it holds only this test's mail."""
    with running_smtp_server() as server:
        yield server
