"""Workspace users in tests: a password for a roster person, stored the way `vigil users
set-password` stores it (Argon2id hash, audit event), so that tests sign in for real; and
the workspace app with the real sign-in over a real database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI

from services.notifier.adapters.passwords import hash_password
from services.notifier.adapters.workspace_accounts import set_password
from services.notifier.domain.roster import Roster
from services.notifier.entrypoints.http_policy import AcknowledgementHttpPolicy
from services.notifier.entrypoints.workspace import account, install_workspace
from services.notifier.entrypoints.workspace.common import WorkspaceDeps
from services.notifier.entrypoints.workspace.sign_in import WorkspaceSignIn
from services.settings import VigilSettings
from shared.db.pool import create_pool
from tests.support.components import as_service_role
from tests.support.notifier import ManualClock, context, roster


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


@asynccontextmanager
async def workspace_pool(admin_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool as the services' role: what it may do to the account tables is what the
    notifier may."""
    pool = await create_pool(as_service_role(admin_dsn))
    try:
        yield pool
    finally:
        await pool.close()


def workspace_settings(**changes: Any) -> VigilSettings:
    values: dict[str, Any] = {
        "environment": "production",
        "workspace_secret_key": "w" * 40,
        "public_base_url": "http://test",
    }
    return VigilSettings(**{**values, **changes})


def workspace_app(
    pool: asyncpg.Pool,
    clock: ManualClock,
    the_roster: Roster | None = None,
    settings: VigilSettings | None = None,
) -> tuple[FastAPI, WorkspaceSignIn]:
    """The workspace as the notifier serves it: its HTTP policy and every workspace route."""
    settings = settings or workspace_settings()
    notifier_context = context(the_roster or roster(), clock)
    authenticator = account.authenticator(lambda: pool, notifier_context, settings)
    assert isinstance(authenticator, WorkspaceSignIn)
    app = FastAPI()
    app.add_middleware(AcknowledgementHttpPolicy)
    install_workspace(
        app,
        WorkspaceDeps(
            pool=lambda: pool, context=notifier_context, settings=settings,
            authenticator=authenticator,
        ),
    )  # fmt: skip
    return app, authenticator


def browser(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
