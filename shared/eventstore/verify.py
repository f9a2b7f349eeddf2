"""Walking the hash chain: finds the first position where the log was altered.

Each row's content hash is recomputed by PostgreSQL's built-in ``pg_catalog.sha256`` over
the canonical bytes (``CANONICAL_SQL``, the same encoding the appender hashes in Python),
so only positions and hashes travel to the verifier; the verifier checks that positions
are gapless and that every row's ``prev_hash`` is the previous row's hash. Ranges of
positions are checked on several connections at once and stitched together in order.

Trust: a database that lies to its verifier can fool any verifier that reads through it.
What a verifier outside the database adds is the anchors (anchors.py): heads recorded
elsewhere that the database cannot rewrite. Exported rows can be checked without
PostgreSQL at all (export.py, ``row_hash_matches``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg

from shared.eventstore.canonical import CANONICAL_SQL, GENESIS_HASH

_RANGE = 10_000
_QUERY = (
    "SELECT position, prev_hash, hash, "
    f"pg_catalog.sha256(prev_hash || {CANONICAL_SQL}) = hash AS content_ok "
    "FROM events WHERE position > $1 AND position <= $2 ORDER BY position"
)


@dataclass(frozen=True)
class ChainReport:
    """What a walk found: ``problem`` is None when every row checked out."""

    checked: int
    first_position: int | None
    last_position: int
    last_hash: bytes
    broken_at: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class _Range:
    """One range of positions, checked on its own; stitched to its neighbours later."""

    low: int  # exclusive
    first_prev: bytes | None
    last_position: int
    last_hash: bytes | None
    checked: int
    broken_at: int | None
    problem: str | None


async def _check_range(pool: asyncpg.Pool, low: int, high: int) -> _Range:
    async with pool.acquire() as connection:
        rows = await connection.fetch(_QUERY, low, high)
    expected, previous = low, None
    first_prev = bytes(rows[0][1]) if rows else None

    def stop(at: int | None, problem: str | None) -> _Range:
        return _Range(low, first_prev, expected, previous, expected - low, at, problem)

    for position, prev_hash, row_hash, content_ok in rows:
        if position != expected + 1:
            return stop(expected + 1, _missing(expected + 1, position))
        if previous is not None and bytes(prev_hash) != previous:
            return stop(position, _not_following(position, expected))
        if not content_ok:
            return stop(
                position,
                f"position {position}: content does not match its hash (the row was altered)",
            )
        expected, previous = position, bytes(row_hash)
    if expected < high:
        return stop(expected + 1, _missing(expected + 1, None))
    return stop(None, None)


def _missing(position: int, next_stored: int | None) -> str:
    found = f" (next stored position is {next_stored})" if next_stored else ""
    return f"position {position} is missing{found}: a row was deleted or positions were changed"


def _not_following(position: int, previous: int) -> str:
    return (
        f"position {position} does not follow position {previous}: its previous hash "
        "differs (rows were removed, inserted or reordered)"
    )


async def verify_chain(
    pool: asyncpg.Pool,
    *,
    after_position: int = 0,
    after_hash: bytes = GENESIS_HASH,
    range_size: int = _RANGE,
    workers: int = 2,
) -> ChainReport:
    """Verify every row after ``after_position`` (whose hash must be ``after_hash``) up to
    the current head; ``workers`` connections check ranges concurrently."""
    head_position = await pool.fetchval("SELECT coalesce(max(position), 0) FROM events")
    lows = list(range(after_position, head_position, range_size))
    gate = asyncio.Semaphore(workers)

    async def checked(low: int) -> _Range:
        async with gate:
            return await _check_range(pool, low, min(low + range_size, head_position))

    results = await asyncio.gather(*(checked(low) for low in lows))
    position, running_hash, total = after_position, after_hash, 0
    for result in results:
        if result.first_prev is not None and result.first_prev != running_hash:
            return ChainReport(
                total,
                after_position + 1 if total else None,
                position,
                running_hash,
                result.low + 1,
                _not_following(result.low + 1, position),
            )
        total += result.checked
        if result.problem is not None:
            return ChainReport(
                total,
                after_position + 1 if total else None,
                result.last_position,
                result.last_hash or running_hash,
                result.broken_at,
                result.problem,
            )
        position = result.last_position
        running_hash = result.last_hash or running_hash
    first = after_position + 1 if total else None
    return ChainReport(total, first, position, running_hash)
