"""Ingest's copy of the API keys, re-read every few seconds so that checking a key costs
no database round trip, and a revoked key stops working within the refresh interval
(VIGIL_INGEST_KEY_REFRESH_SECONDS)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import structlog

from services.ingest.adapters.key_store import load_keys
from services.ingest.domain.api_keys import (
    ApiKeyRecord,
    Authenticated,
    NotAuthenticated,
    authenticate,
    credential_of,
    parse_key,
)
from shared.clock import Clock
from shared.db.pool import DATABASE_ERRORS

log = structlog.get_logger(__name__)


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
        clock: Clock,
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
        self._loaded_since = float("-inf")  # when the latest completed read began
        self._reading: asyncio.Future[bool] | None = None

    async def refresh(self) -> int:
        """Read the whole table (one row per key ever issued: small)."""
        started = self._monotonic()
        async with self._pool.acquire() as connection:
            keys = await load_keys(connection)
        self._keys, self._loaded_at = keys, self._monotonic()
        self._loaded_since = max(self._loaded_since, started)
        return 0  # DrainLoop: no backlog, wait for the next round

    async def _reload(self) -> bool:
        try:
            await self.refresh()
        except DATABASE_ERRORS as error:
            log.warning("ingest.key_reload_failed", error=repr(error))
            return False
        return True

    async def _read_since(self, moment: float) -> None:
        """Return once a read of the table that began at or after ``moment`` is done.
        One read at a time: requests that miss meanwhile share it, so a stream of
        made-up keys costs at most one query in flight, whatever its rate."""
        while self._loaded_since < moment:
            task = self._reading
            if task is None or task.done():
                task = self._reading = asyncio.ensure_future(self._reload())
            if not await asyncio.shield(task):
                return  # the database does not answer: judge on the copy

    def _age(self) -> float:
        return float("inf") if self._loaded_at is None else self._monotonic() - self._loaded_at

    def authenticate(
        self, authorization: str | None, x_api_key: str | None
    ) -> Authenticated | NotAuthenticated | KeysUnavailable:
        """Who the request's credential names, or why it names nobody, from the copy."""
        if self._age() > self._stale_after:
            return KeysUnavailable(
                "ingest cannot read its API keys right now (the database does not answer); "
                "send the request again"
            )
        return authenticate(credential_of(authorization, x_api_key), self._keys, self._clock.now())

    async def authenticate_fresh(
        self, authorization: str | None, x_api_key: str | None
    ) -> Authenticated | NotAuthenticated | KeysUnavailable:
        """As ``authenticate``, after a read of the table that began after the request
        arrived, when its credential is a well-formed key the copy does not know: a key
        created a moment ago works at once."""
        if parse_key(credential_of(authorization, x_api_key) or "") is not None:
            await self._read_since(self._monotonic())
        return self.authenticate(authorization, x_api_key)
