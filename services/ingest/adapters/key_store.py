"""The ``api_keys`` table: read by ingest (as the service role), changed only by
``vigil keys`` (as the schema owner), each change recorded in the audit log's ``api-keys``
stream in the same transaction, so the table and the log never disagree."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from services.ingest.domain.api_keys import ApiKeyRecord, NewKey, generate_key
from shared.events import EventPayload, wrap
from shared.events.api_keys import ApiKeyCreated, ApiKeyRevoked, ApiKeyRotated
from shared.eventstore import NewEvent, append

EVENT_SOURCE = "/vigil/cli/keys"
_COLUMNS = (
    "key_id, source, studies, sites, may_amend_others, secret_sha256, created_at, "
    "expires_at, revoked_at, rotated_from"
)


class KeyNotFound(LookupError):
    """No key has this id."""


class KeyNotActive(ValueError):
    """The key is already revoked or expired; there is nothing to rotate or revoke."""


def _record(row: asyncpg.Record) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_id=row["key_id"],
        source=row["source"],
        studies=frozenset(row["studies"]),
        sites=None if row["sites"] is None else frozenset(row["sites"]),
        may_amend_others=row["may_amend_others"],
        secret_sha256=bytes(row["secret_sha256"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        rotated_from=row["rotated_from"],
    )


async def load_keys(connection: asyncpg.Connection) -> dict[str, ApiKeyRecord]:
    """Every key, by key id (revoked and expired ones too: they answer 401 with why)."""
    rows = await connection.fetch(f"SELECT {_COLUMNS} FROM api_keys")
    return {row["key_id"]: _record(row) for row in rows}


async def _issuer(connection: asyncpg.Connection, issued_by: str) -> str:
    role = await connection.fetchval("SELECT current_user")
    return f"{issued_by} (database role {role})"[:200]


async def _record_events(connection: asyncpg.Connection, events: Sequence[EventPayload]) -> None:
    await append(
        connection,
        [NewEvent(wrap(event, source=EVENT_SOURCE, event_id=uuid.uuid4())) for event in events],
    )


@dataclass(frozen=True)
class KeyScope:
    """What a key allows: one source, named studies, optionally named sites."""

    source: str
    studies: tuple[str, ...]
    sites: tuple[str, ...] | None = None
    may_amend_others: bool = False


async def _insert(
    connection: asyncpg.Connection,
    scope: KeyScope,
    *,
    expires_in: timedelta | None,
    rotated_from: str | None,
) -> tuple[NewKey, ApiKeyRecord]:
    for _ in range(3):  # 64-bit key ids: a clash is all but impossible, but not an error
        new = generate_key()
        row = await connection.fetchrow(
            f"""INSERT INTO api_keys (key_id, source, studies, sites, may_amend_others,
                    secret_sha256, expires_at, rotated_from)
                VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp() + $7, $8)
                ON CONFLICT (key_id) DO NOTHING
                RETURNING {_COLUMNS}""",
            new.key_id,
            scope.source,
            list(scope.studies),
            None if scope.sites is None else list(scope.sites),
            scope.may_amend_others,
            new.secret_sha256,
            expires_in,
            rotated_from,
        )
        if row is not None:
            return new, _record(row)
    raise RuntimeError("could not draw an unused key id; try again")


def _created(record: ApiKeyRecord, issuer: str) -> ApiKeyCreated:
    return ApiKeyCreated(
        key_id=record.key_id,
        issued_by=issuer,
        source=record.source,
        studies=tuple(sorted(record.studies)),
        sites=None if record.sites is None else tuple(sorted(record.sites)),
        may_amend_others=record.may_amend_others,
        created_at=record.created_at,
        expires_at=record.expires_at,
        rotated_from=record.rotated_from,
    )


async def create_key(
    connection: asyncpg.Connection,
    scope: KeyScope,
    *,
    issued_by: str,
    expires_in: timedelta | None = None,
) -> tuple[NewKey, ApiKeyRecord]:
    """Issue a key; the returned NewKey's text is the only copy of the secret."""
    async with connection.transaction():
        issuer = await _issuer(connection, issued_by)
        new, record = await _insert(connection, scope, expires_in=expires_in, rotated_from=None)
        await _record_events(connection, [_created(record, issuer)])
    return new, record


async def _active(connection: asyncpg.Connection, key_id: str) -> ApiKeyRecord:
    row = await connection.fetchrow(
        f"""SELECT {_COLUMNS}, clock_timestamp() AS now FROM api_keys
            WHERE key_id = $1 FOR UPDATE""",
        key_id,
    )
    if row is None:
        raise KeyNotFound(f"no API key has the id {key_id!r}; `vigil keys list` shows them")
    record = _record(row)
    state = record.state(row["now"])
    if state != "active":
        raise KeyNotActive(f"API key {key_id} is already {state}")
    return record


async def rotate_key(
    connection: asyncpg.Connection,
    key_id: str,
    *,
    grace: timedelta,
    issued_by: str,
    expires_in: timedelta | None = None,
) -> tuple[NewKey, ApiKeyRecord, datetime]:
    """Issue a key of the same scope and retire the old one after ``grace`` (zero: now).
    Returns the new key, its record and when the old one stops working."""
    async with connection.transaction():
        issuer = await _issuer(connection, issued_by)
        old = await _active(connection, key_id)
        scope = KeyScope(
            old.source,
            tuple(sorted(old.studies)),
            None if old.sites is None else tuple(sorted(old.sites)),
            old.may_amend_others,
        )
        new, record = await _insert(connection, scope, expires_in=expires_in, rotated_from=key_id)
        retires_at: datetime = await connection.fetchval(
            """UPDATE api_keys
               SET expires_at = least(coalesce(expires_at, 'infinity'), clock_timestamp() + $2)
               WHERE key_id = $1 RETURNING expires_at""",
            key_id,
            grace,
        )
        await _record_events(
            connection,
            [
                _created(record, issuer),
                ApiKeyRotated(
                    key_id=key_id,
                    issued_by=issuer,
                    replaced_by=record.key_id,
                    retires_at=retires_at,
                ),
            ],
        )
    return new, record, retires_at


async def revoke_key(
    connection: asyncpg.Connection, key_id: str, *, issued_by: str, reason: str | None = None
) -> datetime:
    """Stop a key at once; returns the revocation time (the database's clock)."""
    async with connection.transaction():
        issuer = await _issuer(connection, issued_by)
        await _active(connection, key_id)
        revoked_at: datetime = await connection.fetchval(
            "UPDATE api_keys SET revoked_at = clock_timestamp() WHERE key_id = $1 "
            "RETURNING revoked_at",
            key_id,
        )
        await _record_events(
            connection,
            [ApiKeyRevoked(key_id=key_id, issued_by=issuer, revoked_at=revoked_at, reason=reason)],
        )
    return revoked_at
