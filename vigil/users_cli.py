"""``vigil users ...``: the workspace's people. Set a password, unlock an account, reset a
second factor, list who can sign in (never a secret).

People are the roster's (VIGIL_STUDY_DIR): a person id not on any roster is refused. Every
change is recorded in the audit log's ``workspace-accounts`` stream as a
WorkspaceAccountChanged event (person id, what changed, who ran the command; never the
password), in the same transaction as the change. The command connects with
VIGIL_DATABASE_ADMIN_URL when set, else VIGIL_DATABASE_URL.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import asyncpg
import typer

from services.notifier.adapters import workspace_accounts as store
from services.notifier.adapters.passwords import hash_password
from services.notifier.adapters.roster_files import load_rosters
from services.notifier.domain.accounts import email_of, password_problem
from services.notifier.domain.roster import Roster
from services.notifier.domain.workspace_access import viewer_for
from services.settings import VigilSettings
from vigil.keys_cli import operator

users_app = typer.Typer(no_args_is_help=True, help="People who sign in to the workspace.")
T = TypeVar("T")


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"vigil users: {message}", err=True)
    return typer.Exit(code)


def _rosters() -> dict[str, Roster]:
    return load_rosters(VigilSettings().study_dir)


def _on_a_roster(person_id: str, rosters: dict[str, Roster]) -> None:
    if viewer_for(person_id, rosters) is None:
        raise _fail(
            f"{person_id!r} is on no study roster under VIGIL_STUDY_DIR "
            f"({VigilSettings().study_dir}); workspace users are roster people (their id)",
            2,
        )


def _run(action: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    settings = VigilSettings()

    async def run() -> T:
        connection = await asyncpg.connect(settings.admin_dsn)
        try:
            return await action(connection)
        finally:
            await connection.close()

    try:
        return asyncio.run(run())
    except asyncpg.UndefinedTableError:
        raise _fail(
            "the database has no workspace_accounts table; run `vigil db upgrade`"
        ) from None
    except asyncpg.InsufficientPrivilegeError:
        raise _fail(
            "the database role may not change workspace accounts; use the schema owner's "
            "DSN (VIGIL_DATABASE_ADMIN_URL)"
        ) from None


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    first = typer.prompt("New password", hide_input=True)
    again = typer.prompt("New password, again", hide_input=True)
    if first != again:
        raise _fail("the two passwords differ; nothing was changed", 2)
    return str(first)


def set_user_password(
    connection: asyncpg.Connection, person_id: str, password: str, changed_by: str
) -> Awaitable[None]:
    """The change itself (also what `vigil dev` uses for its demo users)."""
    return store.set_password(
        connection,
        person_id,
        hash_password(password),
        now=datetime.now(UTC),
        changed_by=changed_by,
    )


@users_app.command("set-password")
def set_password(
    person_id: Annotated[str, typer.Argument(help="The roster person id (their sign-in name).")],
    stdin: Annotated[
        bool, typer.Option("--stdin", help="Read the password from the first line of stdin.")
    ] = False,
) -> None:
    """Set (or replace) a person's password; unlocks the account and ends their sessions."""
    rosters = _rosters()
    _on_a_roster(person_id, rosters)
    password = _read_password(stdin)
    problem = password_problem(password, person_id, email_of(person_id, rosters))
    if problem is not None:
        raise _fail(f"{problem}; nothing was changed", 2)
    _run(lambda c: set_user_password(c, person_id, password, operator()))
    typer.echo(f"password set for {person_id}; their other sessions have ended")


@users_app.command("unlock")
def unlock(person_id: Annotated[str, typer.Argument(help="The roster person id.")]) -> None:
    """End a lockout after repeated failed sign-ins."""
    if not _run(lambda c: store.unlock(c, person_id, operator())):
        raise _fail(f"{person_id!r} has no workspace account (set a password first)")
    typer.echo(f"unlocked {person_id}")


@users_app.command("reset-totp")
def reset_totp(person_id: Annotated[str, typer.Argument(help="The roster person id.")]) -> None:
    """Remove a person's second factor (a lost phone); they may enrol again after signing in."""
    if not _run(lambda c: store.reset_totp(c, person_id, operator())):
        raise _fail(f"{person_id!r} has no workspace account")
    typer.echo(f"second factor removed for {person_id}; they can enrol a new one")


@users_app.command("list")
def list_users() -> None:
    """Every roster person: their role, whether they have a password and a second factor,
    and whether they are locked. Never a secret."""
    rosters = _rosters()
    accounts = {a.person_id: a for a in _run(store.load_accounts)}
    now = datetime.now(UTC)
    header = ("person", "studies", "role", "password", "second factor", "state")
    rows = []
    on_rosters = {p.id for roster in rosters.values() for p in roster.everyone()}
    for person_id in sorted(on_rosters | set(accounts)):
        viewer = viewer_for(person_id, rosters)
        account = accounts.get(person_id)
        rows.append(
            (
                person_id,
                ",".join(viewer.studies()) if viewer else "-",
                ",".join(sorted({g.role.value for g in viewer.grants})) if viewer else "-",
                "set" if account is not None and account.password_hash else "none",
                "enrolled" if account is not None and account.has_totp else "none",
                _state(viewer is not None, account, now),
            )
        )
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for line in (header, *rows):
        typer.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def _state(on_roster: bool, account: store.Account | None, now: datetime) -> str:
    if not on_roster:
        return "not on any roster (cannot sign in)"
    if account is not None and account.locked_until is not None and now < account.locked_until:
        return f"locked until {account.locked_until:%Y-%m-%d %H:%M %Z}"
    return "active"
