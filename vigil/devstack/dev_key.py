"""The development API key ``vigil dev`` issues on first start and reuses afterwards.

It belongs to the development source (every study of the study folder, may amend other
sources' records) and lives in ``<state-dir>/dev-api-key`` with mode 0600, so scripts
and the demo feed can read it. A file whose key is unknown, ended, or narrower than the
study folder now is replaced by a new key.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Sequence
from pathlib import Path

import asyncpg

from services.ingest.adapters.key_store import KeyScope, create_key, load_keys
from services.ingest.domain.api_keys import parse_key, secret_digest
from services.ingest.domain.development import DEVELOPMENT_SOURCE
from vigil.keys_cli import operator
from vigil.private_file import write_private_file

DEV_KEY_FILE = "dev-api-key"


async def _still_valid(connection: asyncpg.Connection, text: str, studies: Sequence[str]) -> bool:
    presented = parse_key(text)
    if presented is None:
        return False
    record = (await load_keys(connection)).get(presented.key_id)
    now = await connection.fetchval("SELECT clock_timestamp()")
    return (
        record is not None
        and record.state(now) == "active"
        and record.source == DEVELOPMENT_SOURCE
        and set(studies) <= record.studies
        and hmac.compare_digest(record.secret_sha256, secret_digest(presented.secret))
    )


async def _valid_or_new(admin_dsn: str, existing: str | None, studies: Sequence[str]) -> str | None:
    """None when ``existing`` is still a valid development key, else a new key's text."""
    connection = await asyncpg.connect(admin_dsn)
    try:
        if existing is not None and await _still_valid(connection, existing, studies):
            return None
        scope = KeyScope(DEVELOPMENT_SOURCE, tuple(sorted(studies)), None, may_amend_others=True)
        new, _ = await create_key(connection, scope, issued_by=f"vigil dev, {operator()}")
        return new.text
    finally:
        await connection.close()


def ensure_dev_key(admin_dsn: str, key_file: Path, studies: Sequence[str]) -> tuple[str, bool]:
    """The development key (reused from ``key_file`` while valid, else issued and written
    there); True when it was issued now."""
    existing = key_file.read_text().strip() if key_file.is_file() else None
    issued = asyncio.run(_valid_or_new(admin_dsn, existing, studies))
    if issued is None:
        assert existing is not None
        return existing, False
    write_private_file(key_file, issued + "\n")
    return issued, True
