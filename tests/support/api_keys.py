"""API keys for tests, issued the way `vigil keys create` issues them (schema owner's DSN).

Every HTTP write to ingest needs one: the ``services`` fixture carries a session key
(``services.api_key``, ``services.headers``); a test that wants another source, study
scope, site scope or amend right issues its own with :func:`issue_api_key`.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from services.ingest.adapters.key_store import KeyScope, create_key

STUDY = "NCT05262686"


@dataclass(frozen=True)
class IssuedKey:
    """A key as its holder has it: the text to send, its id, and the source it names."""

    key: str
    key_id: str
    source: str

    @property
    def headers(self) -> dict[str, str]:
        """``Authorization: Bearer <key>``, ready for httpx."""
        return {"Authorization": f"Bearer {self.key}"}


async def issue_api_key(
    admin_dsn: str,
    *,
    source: str = "tests",
    studies: tuple[str, ...] = (STUDY,),
    sites: tuple[str, ...] | None = None,
    may_amend_others: bool = False,
    expires_in: timedelta | None = None,
) -> IssuedKey:
    """A new key in the database ``admin_dsn`` names (it must be the schema owner's)."""
    connection = await asyncpg.connect(admin_dsn)
    try:
        scope = KeyScope(source, studies, sites, may_amend_others)
        new, record = await create_key(connection, scope, issued_by="tests", expires_in=expires_in)
    finally:
        await connection.close()
    return IssuedKey(new.text, record.key_id, record.source)


def issue_api_key_blocking(admin_dsn: str, **scope: object) -> IssuedKey:
    """:func:`issue_api_key` for synchronous fixtures."""
    return asyncio.run(issue_api_key(admin_dsn, **scope))  # type: ignore[arg-type]


async def vigil_keys(
    *args: str, admin_dsn: str | None, service_dsn: str
) -> subprocess.CompletedProcess[str]:
    """``vigil keys ...`` as an operator runs it (VIGIL_DATABASE_ADMIN_URL unset when
    ``admin_dsn`` is None)."""
    env = {"VIGIL_DATABASE_URL": service_dsn, "PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    if admin_dsn is not None:
        env["VIGIL_DATABASE_ADMIN_URL"] = admin_dsn
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "vigil", "keys", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
