"""Versioned schema migrations: numbered SQL files applied once each, in order.

``upgrade`` is idempotent and safe to run from several processes at once: an advisory
lock serialises them and each migration runs in its own transaction with its record. It
runs as an administrator who acts as the owner role (:mod:`shared.db.ownership`), so every
object it creates belongs to that NOLOGIN role and never to the services.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import asyncpg
import structlog

from shared.db.ownership import (
    check_migrating_role,
    ensure_owner_role,
    quoted,
    refuse_privileged_service_role,
    transfer_ownership,
)
from shared.db.roles import ensure_service_role

log = structlog.get_logger(__name__)

# Arbitrary constant that identifies Vigil's migration lock among advisory locks.
_MIGRATION_LOCK = 7_345_001


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file."""

    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    """The migrations shipped with this version of Vigil, in order."""
    folder = resources.files("shared.db").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text()))
    return sorted(found, key=lambda migration: migration.version)


async def applied_versions(connection: asyncpg.Connection) -> set[int]:
    """Versions already applied; empty for a database Vigil never touched."""
    exists = await connection.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return set()
    rows = await connection.fetch("SELECT version FROM schema_migrations")
    return {row["version"] for row in rows}


async def upgrade(
    dsn: str,
    *,
    service_role: str = "vigil_app",
    service_password: str | None = None,
    owner_role: str = "vigil_owner",
) -> list[Migration]:
    """Apply every migration not applied yet, as the owner role, and grant the service role
    its rights. Raises :class:`~shared.db.ownership.MigrationRefused` when ``dsn`` is the
    service role's or a role that cannot act as the owner.

    Returns the migrations applied by this call.
    """
    connection = await asyncpg.connect(dsn)
    try:
        await check_migrating_role(connection, service_role=service_role, owner_role=owner_role)
        await connection.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await ensure_owner_role(connection, owner_role)
            moved = await transfer_ownership(connection, owner_role)
            if moved:
                log.info("db.ownership_transferred", owner=owner_role, objects=len(moved))
            await connection.execute(f"SET ROLE {await quoted(connection, owner_role)}")
            applied = await _apply_migrations(connection)
            await connection.execute("RESET ROLE")
            await ensure_service_role(connection, service_role, service_password)
            await refuse_privileged_service_role(
                connection, service_role=service_role, owner_role=owner_role
            )
            return applied
        finally:
            await connection.execute("RESET ROLE")
            await connection.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    finally:
        await connection.close()


async def _apply_migrations(connection: asyncpg.Connection) -> list[Migration]:
    """Each migration not applied yet, in its own transaction with its record."""
    await connection.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version    integer     PRIMARY KEY,
               name       text        NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT clock_timestamp())"""
    )
    done = await applied_versions(connection)
    applied = []
    for migration in available_migrations():
        if migration.version in done:
            continue
        async with connection.transaction():
            await connection.execute(migration.sql)
            await connection.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
        log.info("db.migration_applied", version=migration.version, name=migration.name)
        applied.append(migration)
    return applied


async def pending_migrations(connection: asyncpg.Connection) -> list[Migration]:
    """Migrations this code expects that the database does not have yet."""
    done = await applied_versions(connection)
    return [migration for migration in available_migrations() if migration.version not in done]


async def require_current_schema(dsn: str) -> None:
    """Fail with the fix when the database schema is behind this code."""
    connection = await asyncpg.connect(dsn)
    try:
        missing = await pending_migrations(connection)
    finally:
        await connection.close()
    if missing:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in missing)
        raise RuntimeError(
            f"database schema is not current (missing {names}); run `vigil db upgrade`"
        )
