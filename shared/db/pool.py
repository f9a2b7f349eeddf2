"""Connection pools for the services."""

from __future__ import annotations

import asyncpg

#: what a database call raises when PostgreSQL refused or failed it, the way to it broke
#: (OSError), or the connection died under it (asyncpg's InterfaceError, e.g. "cannot call
#: Transaction.__aexit__(): the underlying connection is closed")
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    OSError,
    asyncpg.InterfaceError,
)


async def create_pool(dsn: str, *, max_size: int = 5) -> asyncpg.Pool:
    """A pool on ``dsn``; json/jsonb travel as text, exactly as Vigil serialised them."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=max_size)
    assert pool is not None
    return pool
