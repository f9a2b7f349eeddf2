"""Workspace users in tests: a password for a roster person, stored the way `vigil users
set-password` stores it (Argon2id hash, audit event), so that tests sign in for real."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from services.notifier.adapters.passwords import hash_password
from services.notifier.adapters.workspace_accounts import set_password


async def create_workspace_user(dsn: str, person_id: str, password: str) -> None:
    """Give ``person_id`` (a roster id) the workspace password ``password``; ``dsn`` is the
    database administrator's (the schema owner's) DSN."""
    connection = await asyncpg.connect(dsn)
    try:
        await set_password(
            connection,
            person_id,
            hash_password(password),
            now=datetime.now(UTC),
            changed_by="tests",
        )
    finally:
        await connection.close()
