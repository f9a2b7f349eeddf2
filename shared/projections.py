"""Projections: read models fed from the event store, each with its own checkpoint.

A projection can always be dropped and rebuilt from position zero; the rebuilt state must
equal the live one, which is what makes the event store the only source of truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import asyncpg

from shared.eventstore import PayloadEvent, read_payloads


class Projection(Protocol):
    """A read model: ``apply`` runs inside the runner's transaction."""

    name: str

    async def reset(self, connection: asyncpg.Connection) -> None: ...

    async def apply(
        self, connection: asyncpg.Connection, events: Sequence[PayloadEvent]
    ) -> None: ...


class ProjectionRunner:
    """Feeds one projection in batches; the checkpoint moves in the same transaction.

    The checkpoint row is locked while a batch is applied, so several service instances
    can run the same projection: one applies, the others skip that round.
    """

    def __init__(
        self, pool: asyncpg.Pool, projection: Projection, *, batch_size: int = 1000
    ) -> None:
        self._pool = pool
        self._projection = projection
        self._batch_size = batch_size

    @property
    def name(self) -> str:
        return self._projection.name

    async def _lock_checkpoint(self, connection: asyncpg.Connection, *, wait: bool) -> int | None:
        await connection.execute(
            "INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING",
            self.name,
        )
        skip = "" if wait else " SKIP LOCKED"
        position: int | None = await connection.fetchval(
            f"SELECT position FROM projection_checkpoints WHERE name = $1 FOR UPDATE{skip}",
            self.name,
        )
        return position

    async def _advance(self, connection: asyncpg.Connection, position: int) -> None:
        await connection.execute(
            "UPDATE projection_checkpoints SET position = $2, updated_at = clock_timestamp() "
            "WHERE name = $1",
            self.name,
            position,
        )

    async def _apply_next(self, connection: asyncpg.Connection, *, wait: bool, limit: int) -> int:
        position = await self._lock_checkpoint(connection, wait=wait)
        if position is None:
            return 0  # another instance is applying right now
        events = await read_payloads(connection, after_position=position, limit=limit)
        if not events:
            return 0
        await self._projection.apply(connection, events)
        await self._advance(connection, events[-1].position)
        return len(events)

    async def step(self) -> int:
        """Apply the next batch; returns how many events it applied (0: caught up or busy)."""
        async with self._pool.acquire() as connection, connection.transaction():
            return await self._apply_next(connection, wait=False, limit=self._batch_size)

    async def catch_up_in(self, connection: asyncpg.Connection, *, limit: int = 5000) -> int:
        """Apply what is new inside the caller's transaction (a writer keeping its read model
        in step with what it just appended); at most ``limit`` events, the rest is left to
        :meth:`step`. Waits for another instance's round to end rather than skip."""
        return await self._apply_next(connection, wait=True, limit=limit)

    async def catch_up(self) -> int:
        """Apply everything there is now; returns how many events."""
        total = 0
        while applied := await self.step():
            total += applied
        return total

    async def position(self) -> int:
        value = await self._pool.fetchval(
            "SELECT position FROM projection_checkpoints WHERE name = $1", self.name
        )
        return int(value or 0)

    async def rebuild(self) -> int:
        """Drop the read model and replay the whole log into it, in one transaction, so
        readers see the old state until the new one is complete."""
        async with self._pool.acquire() as connection, connection.transaction():
            await self._lock_checkpoint(connection, wait=True)
            await self._projection.reset(connection)
            position, total = 0, 0
            while events := await read_payloads(
                connection, after_position=position, limit=self._batch_size
            ):
                await self._projection.apply(connection, events)
                position = events[-1].position
                total += len(events)
            await self._advance(connection, position)
            return total
