"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from shared.db.pool import create_pool


@pytest.fixture
async def pool(fresh_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a database private to the test."""
    pool = await create_pool(fresh_dsn)
    try:
        yield pool
    finally:
        await pool.close()
