"""``vigil keys ...``: issue, list, rotate and revoke the API keys HTTP senders use.

Keys are changed only through the schema owner's DSN (VIGIL_DATABASE_ADMIN_URL): the
services' role may read the key table and nothing more, so a compromised service cannot
mint itself a key. Every change is recorded in the audit log's ``api-keys`` stream.
"""

from __future__ import annotations

import asyncio
import getpass
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, TypeVar

import asyncpg
import typer

from services.ingest.adapters.key_store import (
    KeyNotActive,
    KeyNotFound,
    KeyScope,
    create_key,
    load_keys,
    revoke_key,
    rotate_key,
)
from services.ingest.domain.api_keys import SOURCE_NAME, ApiKeyRecord
from services.settings import VigilSettings
from vigil.private_file import write_private_file

keys_app = typer.Typer(no_args_is_help=True, help="API keys of the HTTP senders.")
T = TypeVar("T")
_STUDY_ID = SOURCE_NAME  # the same characters: letters, digits, '.', '_', '-'


def operator() -> str:
    """Who runs the command, for the audit log: the account and the host."""
    try:
        account = getpass.getuser()
    except (KeyError, OSError):
        account = "unknown"
    return f"{account}@{socket.gethostname()}"


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"vigil keys: {message}", err=True)
    return typer.Exit(code)


def _run(action: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run ``action`` on a connection as the schema owner, or explain why it cannot."""
    settings = VigilSettings()
    if settings.database_admin_url is None:
        raise _fail(
            "VIGIL_DATABASE_ADMIN_URL is not set. API keys are created and ended only "
            "through the schema owner's DSN; the services' role (VIGIL_DATABASE_URL) may only "
            "read them.",
            2,
        )

    async def run() -> T:
        connection = await asyncpg.connect(settings.database_admin_url)
        try:
            return await action(connection)
        finally:
            await connection.close()

    try:
        return asyncio.run(run())
    except asyncpg.InsufficientPrivilegeError:
        raise _fail(
            "the role of VIGIL_DATABASE_ADMIN_URL may not change API keys (insufficient "
            "privilege); use the schema owner's DSN, the one `vigil db upgrade` runs with"
        ) from None
    except asyncpg.UndefinedTableError:
        raise _fail("the database has no api_keys table; run `vigil db upgrade` first") from None
    except (KeyNotFound, KeyNotActive) as error:
        raise _fail(str(error)) from None


def _deliver(text: str, output: Path | None, what: str) -> None:
    if output is None:
        typer.echo(text)
        typer.echo(f"{what}: shown once; Vigil keeps only its hash.", err=True)
        return
    write_private_file(output, text + "\n")
    typer.echo(f"{what}: written to {output} (mode 0600); Vigil keeps only its hash.", err=True)


def _scope_line(record: ApiKeyRecord) -> str:
    sites = ", ".join(sorted(record.sites)) if record.sites else "every site"
    amend = "; may amend other sources' records" if record.may_amend_others else ""
    return (
        f"key {record.key_id} for source {record.source}: studies "
        f"{', '.join(sorted(record.studies))}; {sites}{amend}"
    )


@keys_app.command("create")
def create(
    source: Annotated[str, typer.Option(help="The sending system's name, e.g. pkuph-lab.")],
    study: Annotated[list[str], typer.Option(help="A study the key may write (repeatable).")],
    site: Annotated[
        list[str] | None, typer.Option(help="Only these sites (repeatable; default: every site).")
    ] = None,
    may_amend_others: Annotated[
        bool,
        typer.Option(help="May move subjects and correct records that another source sent."),
    ] = False,
    expires_in_days: Annotated[
        float | None, typer.Option(min=0.001, help="Expire after this many days.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="Write the key to this file (mode 0600), not stdout.")
    ] = None,
) -> None:
    """Issue a key; it is printed (or written) once and only its hash is kept."""
    if not SOURCE_NAME.match(source):
        raise _fail("--source: use 1 to 64 letters, digits, '.', '_' or '-'", 2)
    bad = [s for s in [*study, *(site or [])] if not _STUDY_ID.match(s)]
    if bad or not study:
        raise _fail("--study/--site: give at least one study; ids use letters, digits, .-_", 2)
    study_dir = VigilSettings().study_dir
    for name in study:
        if not (study_dir / name).is_dir():
            typer.echo(
                f"vigil keys: note: no folder {study_dir / name} (VIGIL_STUDY_DIR)", err=True
            )
    scope = KeyScope(
        source,
        tuple(sorted(set(study))),
        tuple(sorted(set(site))) if site else None,
        may_amend_others,
    )
    expires = timedelta(days=expires_in_days) if expires_in_days else None
    new, record = _run(
        lambda connection: create_key(connection, scope, issued_by=operator(), expires_in=expires)
    )
    _deliver(new.text, output, f"created {_scope_line(record)}")


@keys_app.command("list")
def list_keys() -> None:
    """Every key with its scope and state; never a secret."""
    keys = _run(load_keys)
    now = datetime.now(UTC)
    header = ("key id", "source", "studies", "sites", "amend", "state", "created", "ends", "from")
    rows = [
        (
            key.key_id,
            key.source,
            ",".join(sorted(key.studies)),
            ",".join(sorted(key.sites)) if key.sites else "*",
            "yes" if key.may_amend_others else "no",
            key.state(now),
            f"{key.created_at:%Y-%m-%d %H:%M}",
            _ends(key),
            key.rotated_from or "-",
        )
        for key in sorted(keys.values(), key=lambda k: k.created_at)
    ]
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    for line in (header, *rows):
        cells = (str(cell).ljust(width) for cell, width in zip(line, widths, strict=True))
        typer.echo("  ".join(cells).rstrip())


def _ends(key: ApiKeyRecord) -> str:
    if key.revoked_at is not None:
        return f"revoked {key.revoked_at:%Y-%m-%d %H:%M}"
    if key.expires_at is not None:
        return f"expires {key.expires_at:%Y-%m-%d %H:%M}"
    return "-"


@keys_app.command("rotate")
def rotate(
    key_id: Annotated[str, typer.Argument(help="The key to replace.")],
    grace_hours: Annotated[
        float, typer.Option(min=0, help="How long the old key keeps working (0: not at all).")
    ] = 24.0,
    output: Annotated[
        Path | None, typer.Option(help="Write the new key to this file (mode 0600).")
    ] = None,
) -> None:
    """Issue a key of the same scope; the old one stops after the grace period."""
    new, record, retires_at = _run(
        lambda connection: rotate_key(
            connection, key_id, grace=timedelta(hours=grace_hours), issued_by=operator()
        )
    )
    _deliver(
        new.text,
        output,
        f"created {_scope_line(record)}; key {key_id} stops at {retires_at:%Y-%m-%d %H:%M:%S %Z}",
    )


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key to stop.")],
    reason: Annotated[str | None, typer.Option(help="Why, for the audit log.")] = None,
) -> None:
    """Stop a key now (ingest notices within VIGIL_INGEST_KEY_REFRESH_SECONDS)."""
    revoked_at = _run(
        lambda connection: revoke_key(connection, key_id, issued_by=operator(), reason=reason)
    )
    typer.echo(f"revoked key {key_id} at {revoked_at:%Y-%m-%d %H:%M:%S %Z}")
