"""Connection pools for the services."""

from __future__ import annotations

import asyncpg


async def create_pool(dsn: str, *, max_size: int = 5) -> asyncpg.Pool:
    """A pool on ``dsn``; json/jsonb travel as text, exactly as Vigil serialised them."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=max_size)
    assert pool is not None
    return pool
