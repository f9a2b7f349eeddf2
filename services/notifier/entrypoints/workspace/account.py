"""Workspace page: sign-in, sign-out, account (being built)."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
from fastapi import APIRouter, Request

from services.notifier.entrypoints.workspace.common import (
    Authenticator,
    Session,
    SignatureRefused,
    WorkspaceDeps,
)
from services.notifier.handlers.context import NotifierContext
from services.settings import VigilSettings


class NobodySignedIn:
    """Placeholder until sessions exist: nobody is signed in."""

    async def session(self, request: Request) -> Session | None:
        return None

    async def confirm_signer(self, session: Session, password: str, code: str | None) -> str:
        raise SignatureRefused("nobody can sign yet")


def authenticator(
    pool: Callable[[], asyncpg.Pool], context: NotifierContext, settings: VigilSettings
) -> Authenticator:
    """What reads the session cookie of each workspace request."""
    return NobodySignedIn()


def router(deps: WorkspaceDeps) -> APIRouter:
    """The account routes."""
    return APIRouter()
