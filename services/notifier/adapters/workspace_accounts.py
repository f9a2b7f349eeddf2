"""The workspace's accounts, sessions and OpenID Connect sign-ins in PostgreSQL
(migration 0016), and the audit-log events of account changes, appended in the same
transaction as the change they record."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shared.events import wrap
from shared.events.workspace_accounts import AccountChange, WorkspaceAccountChanged
from shared.eventstore import NewEvent, append

EVENT_SOURCE = "/vigil/notifier/workspace"
_ACCOUNT_COLUMNS = (
    "person_id, password_hash, password_changed_at, totp_secret, totp_enabled_at, "
    "totp_pending, totp_last_step, failed_attempts, locked_until"
)
_SESSION_COLUMNS = (
    "person_id, stage, method, csrf, next_url, created_at, last_seen_at, expires_at, revoked_at"
)


def token_digest(token: str) -> bytes:
    """What the database keeps of a session token or an OIDC state: its SHA-256."""
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class Account:
    """One person's credentials (the secrets still sealed or hashed)."""

    person_id: str
    password_hash: str | None
    password_changed_at: datetime | None
    totp_secret: bytes | None
    totp_enabled_at: datetime | None
    totp_pending: bytes | None
    totp_last_step: int | None
    failed_attempts: int
    locked_until: datetime | None

    @property
    def has_totp(self) -> bool:
        return self.totp_secret is not None


def _account(row: asyncpg.Record) -> Account:
    return Account(
        person_id=row["person_id"],
        password_hash=row["password_hash"],
        password_changed_at=row["password_changed_at"],
        totp_secret=None if row["totp_secret"] is None else bytes(row["totp_secret"]),
        totp_enabled_at=row["totp_enabled_at"],
        totp_pending=None if row["totp_pending"] is None else bytes(row["totp_pending"]),
        totp_last_step=row["totp_last_step"],
        failed_attempts=row["failed_attempts"],
        locked_until=row["locked_until"],
    )


async def load_account(
    connection: asyncpg.Connection, person_id: str, *, for_update: bool = False
) -> Account | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await connection.fetchrow(
        f"SELECT {_ACCOUNT_COLUMNS} FROM workspace_accounts WHERE person_id = $1{lock}",
        person_id,
    )
    return None if row is None else _account(row)


async def load_accounts(connection: asyncpg.Connection) -> list[Account]:
    rows = await connection.fetch(
        f"SELECT {_ACCOUNT_COLUMNS} FROM workspace_accounts ORDER BY person_id"
    )
    return [_account(row) for row in rows]


async def record_change(
    connection: asyncpg.Connection, person_id: str, change: AccountChange, changed_by: str
) -> None:
    """The audit-log event of an account change (call inside the change's transaction)."""
    event = WorkspaceAccountChanged(person_id=person_id, change=change, changed_by=changed_by[:200])
    await append(connection, [NewEvent(wrap(event, source=EVENT_SOURCE, event_id=uuid.uuid4()))])


async def set_password(
    connection: asyncpg.Connection,
    person_id: str,
    password_hash: str,
    *,
    now: datetime,
    changed_by: str,
    keep_session: bytes | None = None,
) -> None:
    """Store a new password hash, unlock the account and end every session of the person
    but ``keep_session`` (the one that changed it), with the audit-log event."""
    async with connection.transaction():
        existed = await connection.fetchval(
            """INSERT INTO workspace_accounts (person_id, password_hash, password_changed_at)
               VALUES ($1, $2, $3)
               ON CONFLICT (person_id) DO UPDATE
                   SET password_hash = $2, password_changed_at = $3,
                       failed_attempts = 0, locked_until = NULL
               RETURNING (xmax <> 0)""",
            person_id,
            password_hash,
            now,
        )
        await revoke_sessions(connection, person_id, now=now, keep=keep_session)
        change: AccountChange = "password-changed" if existed else "password-set"
        await record_change(connection, person_id, change, changed_by)


async def rehash_password(connection: asyncpg.Connection, person_id: str, new_hash: str) -> None:
    """The same password under the hasher's current parameters (not a change: no event)."""
    await connection.execute(
        "UPDATE workspace_accounts SET password_hash = $2 WHERE person_id = $1",
        person_id,
        new_hash,
    )


async def record_failure(
    connection: asyncpg.Connection,
    person_id: str,
    failed_attempts: int,
    locked_until: datetime | None,
) -> None:
    async with connection.transaction():
        await connection.execute(
            """UPDATE workspace_accounts SET failed_attempts = $2,
                   locked_until = coalesce($3, locked_until)
               WHERE person_id = $1""",
            person_id,
            failed_attempts,
            locked_until,
        )
        if locked_until is not None:
            await record_change(connection, person_id, "locked", "workspace")


async def clear_failures(connection: asyncpg.Connection, person_id: str) -> None:
    await connection.execute(
        "UPDATE workspace_accounts SET failed_attempts = 0 WHERE person_id = $1 "
        "AND failed_attempts <> 0",
        person_id,
    )


async def unlock(connection: asyncpg.Connection, person_id: str, changed_by: str) -> bool:
    async with connection.transaction():
        found = await connection.fetchval(
            """UPDATE workspace_accounts SET failed_attempts = 0, locked_until = NULL
               WHERE person_id = $1 RETURNING true""",
            person_id,
        )
        if found:
            await record_change(connection, person_id, "unlocked", changed_by)
    return bool(found)


async def set_pending_totp(connection: asyncpg.Connection, person_id: str, sealed: bytes) -> None:
    """A secret shown for enrolment, not yet confirmed by a first code."""
    await connection.execute(
        "UPDATE workspace_accounts SET totp_pending = $2 WHERE person_id = $1",
        person_id,
        sealed,
    )


async def enable_totp(
    connection: asyncpg.Connection, person_id: str, sealed: bytes, step: int, now: datetime
) -> None:
    async with connection.transaction():
        await connection.execute(
            """UPDATE workspace_accounts SET totp_secret = $2, totp_enabled_at = $4,
                   totp_pending = NULL, totp_last_step = $3
               WHERE person_id = $1""",
            person_id,
            sealed,
            step,
            now,
        )
        await record_change(connection, person_id, "totp-enrolled", f"person:{person_id}")


async def use_totp_step(connection: asyncpg.Connection, person_id: str, step: int) -> bool:
    """Record an accepted code's step; False when another request used it (or a later one)
    first, so one code can never open two sessions."""
    updated = await connection.fetchval(
        """UPDATE workspace_accounts SET totp_last_step = $2, failed_attempts = 0
           WHERE person_id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)
           RETURNING true""",
        person_id,
        step,
    )
    return bool(updated)


async def reset_totp(connection: asyncpg.Connection, person_id: str, changed_by: str) -> bool:
    async with connection.transaction():
        found = await connection.fetchval(
            """UPDATE workspace_accounts SET totp_secret = NULL, totp_enabled_at = NULL,
                   totp_pending = NULL, totp_last_step = NULL
               WHERE person_id = $1 RETURNING true""",
            person_id,
        )
        if found:
            await record_change(connection, person_id, "totp-reset", changed_by)
    return bool(found)


@dataclass(frozen=True)
class StoredSession:
    person_id: str
    stage: str
    method: str
    csrf: str
    next_url: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


def _session(row: asyncpg.Record) -> StoredSession:
    return StoredSession(**{key: row[key] for key in StoredSession.__dataclass_fields__})


async def create_session(
    connection: asyncpg.Connection,
    token: str,
    *,
    person_id: str,
    stage: str,
    method: str,
    csrf: str,
    next_url: str,
    now: datetime,
    expires_at: datetime,
) -> None:
    await connection.execute(
        """INSERT INTO workspace_sessions (token_sha256, person_id, stage, method, csrf,
               next_url, created_at, last_seen_at, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)""",
        token_digest(token),
        person_id,
        stage,
        method,
        csrf,
        next_url,
        now,
        expires_at,
    )


async def load_session(connection: asyncpg.Connection, token: str) -> StoredSession | None:
    row = await connection.fetchrow(
        f"SELECT {_SESSION_COLUMNS} FROM workspace_sessions WHERE token_sha256 = $1",
        token_digest(token),
    )
    return None if row is None else _session(row)


async def touch_session(connection: asyncpg.Connection, token: str, now: datetime) -> None:
    """The session was used now: its idle deadline moves on."""
    await connection.execute(
        "UPDATE workspace_sessions SET last_seen_at = greatest(last_seen_at, $2) "
        "WHERE token_sha256 = $1",
        token_digest(token),
        now,
    )


async def revoke_session(connection: asyncpg.Connection, token: str, now: datetime) -> None:
    await connection.execute(
        "UPDATE workspace_sessions SET revoked_at = $2 "
        "WHERE token_sha256 = $1 AND revoked_at IS NULL",
        token_digest(token),
        now,
    )


async def revoke_sessions(
    connection: asyncpg.Connection, person_id: str, *, now: datetime, keep: bytes | None = None
) -> int:
    """End every live session of the person (but ``keep``, a token digest)."""
    result: str = await connection.execute(
        """UPDATE workspace_sessions SET revoked_at = $2
           WHERE person_id = $1 AND revoked_at IS NULL
             AND ($3::bytea IS NULL OR token_sha256 <> $3)""",
        person_id,
        now,
        keep,
    )
    return int(result.rsplit(" ", 1)[-1])


async def forget_ended_sessions(connection: asyncpg.Connection, before: datetime) -> None:
    """Drop sessions that ended before ``before`` (the table is a working table)."""
    await connection.execute(
        "DELETE FROM workspace_sessions WHERE expires_at < $1 OR revoked_at < $1", before
    )


@dataclass(frozen=True)
class OidcLogin:
    nonce: str
    code_verifier: str
    next_url: str


async def store_oidc_login(
    connection: asyncpg.Connection, state: str, login: OidcLogin, expires_at: datetime
) -> None:
    await connection.execute(
        """INSERT INTO workspace_oidc_logins (state_sha256, nonce, code_verifier, next_url,
               expires_at) VALUES ($1, $2, $3, $4, $5)""",
        token_digest(state),
        login.nonce,
        login.code_verifier,
        login.next_url,
        expires_at,
    )


async def take_oidc_login(
    connection: asyncpg.Connection, state: str, now: datetime
) -> OidcLogin | None:
    """The sign-in ``state`` belongs to, once (it is removed), while not expired."""
    row = await connection.fetchrow(
        """DELETE FROM workspace_oidc_logins WHERE state_sha256 = $1
           RETURNING nonce, code_verifier, next_url, expires_at""",
        token_digest(state),
    )
    await connection.execute("DELETE FROM workspace_oidc_logins WHERE expires_at < $1", now)
    if row is None or row["expires_at"] <= now:
        return None
    return OidcLogin(row["nonce"], row["code_verifier"], row["next_url"])
