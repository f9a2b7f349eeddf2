"""Ingest's copy of the API keys, re-read every few seconds so that checking a key costs
no database round trip, and a revoked key stops working within the refresh interval."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import structlog

from services.ingest.adapters.key_store import load_keys
from services.ingest.api_keys import (
    ApiKeyRecord,
    Authenticated,
    NotAuthenticated,
    authenticate,
    credential_of,
)

log = structlog.get_logger(__name__)
# A key id ingest does not know may have been created a moment ago: look again, but at
# most this often, so a stream of made-up keys cannot turn into a stream of queries.
_RELOAD_ON_MISS_SECONDS = 1.0


@dataclass(frozen=True)
class KeysUnavailable:
    """The key table has not been read recently enough to trust (the database is away):
    the request gets 503, neither accepted nor refused as unauthenticated."""

    detail: str


class ApiKeyCache:
    """The key table in memory; ``refresh`` is called every ``refresh_seconds``."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        refresh_seconds: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._monotonic = monotonic
        self.refresh_seconds = refresh_seconds
        # beyond this age the copy may hide a revocation for too long to be trusted
        self._stale_after = max(30.0, 10 * refresh_seconds)
        self._keys: dict[str, ApiKeyRecord] = {}
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()

    async def refresh(self, *, if_older_than: float = 0.0) -> int:
        """Read the whole table (one row per key ever issued: small), unless the copy is
        younger than ``if_older_than`` seconds (another request just read it)."""
        async with self._lock:
            if self._age() < if_older_than:
                return 0
            async with self._pool.acquire() as connection:
                keys = await load_keys(connection)
            self._keys, self._loaded_at = keys, self._monotonic()
        return 0  # DrainLoop: no backlog, wait for the next round

    def _age(self) -> float:
        return float("inf") if self._loaded_at is None else self._monotonic() - self._loaded_at

    async def authenticate(
        self, authorization: str | None, x_api_key: str | None
    ) -> Authenticated | NotAuthenticated | KeysUnavailable:
        """Who the request's credential names, or why it names nobody."""
        if self._age() > self._stale_after:
            return KeysUnavailable(
                "ingest cannot read its API keys right now (the database does not answer); "
                "send the request again"
            )
        credential = credential_of(authorization, x_api_key)
        result = authenticate(credential, self._keys, self._clock())
        missed = isinstance(result, NotAuthenticated) and result.reason in (
            "unknown-key",
            "no-keys-configured",
        )
        if missed and credential and self._age() >= _RELOAD_ON_MISS_SECONDS:
            try:
                await self.refresh(if_older_than=_RELOAD_ON_MISS_SECONDS)
            except (asyncpg.PostgresError, OSError) as error:
                log.warning("ingest.key_reload_failed", error=repr(error))
            result = authenticate(credential, self._keys, self._clock())
        return result
