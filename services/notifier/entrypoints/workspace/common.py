"""What every workspace page shares: its dependencies, the signed-in person, templates,
and the one answer to anything outside a person's scope.

The workspace is server-rendered HTML (Jinja2, autoescaped) under ``/workspace``; its
stylesheet and one small script are served from this package (``/workspace/static``), so
no page needs any network beyond this server. Headers and body caps:
:mod:`services.notifier.entrypoints.http_policy`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn, Protocol
from urllib.parse import quote
from zoneinfo import ZoneInfo

import anyio
import asyncpg
import structlog
from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from services.notifier.domain.roster import Roster
from services.notifier.domain.site_time import UTC_ZONE, local_time, time_left
from services.notifier.domain.workspace_access import Viewer
from services.notifier.handlers.context import NotifierContext
from services.notifier.metrics import WORKSPACE_OUT_OF_SCOPE
from services.settings import VigilSettings

log = structlog.get_logger(__name__)

PREFIX = "/workspace"
SESSION_COOKIE = "vigil_session"
# charts are drawn in worker threads, at most this many at once: however many people open
# subject pages, the notifier's own work (deliveries, escalation, the consumer) keeps its
# share of the process
CHART_THREADS = 2
# the largest form any workspace page sends: an assessment's 4,000-character comment,
# percent-encoded, and a few short fields
MAX_FORM_BYTES = 64 * 1024


@dataclass(frozen=True)
class Session:
    """A signed-in person's session: who, and the token every form must carry back."""

    id: str
    viewer: Viewer
    csrf: str
    expires_at: datetime


class SignatureRefused(Exception):
    """The password (or second factor) given to sign was wrong, or the account is locked.
    The message says which field to look at, never what was typed."""


class Authenticator(Protocol):
    """Reads the session a request carries (``SESSION_COOKIE``), and confirms a signer."""

    async def session(self, request: Request) -> Session | None:
        """The live session, or None (none, expired, signed out, or no longer on a roster)."""
        ...

    async def confirm_signer(self, session: Session, password: str, code: str | None) -> str:
        """21 CFR 11.200: the signed-in person signs again with both of their components
        (password, and the TOTP code when enrolled). Returns how they were confirmed
        (``password`` or ``password+totp``); raises SignatureRefused (and counts the
        failure toward the account's lockout)."""
        ...


class SignInRequired(Exception):
    """No live session: the browser is sent to sign in, then back to ``next_url``."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


@dataclass(frozen=True)
class WorkspaceDeps:
    """What the workspace's routers are built with."""

    pool: Callable[[], asyncpg.Pool]
    context: NotifierContext
    settings: VigilSettings
    authenticator: Authenticator

    @property
    def rosters(self) -> Mapping[str, Roster]:
        return self.context.rosters

    def zone(self, study_id: str, site_id: str | None) -> ZoneInfo:
        """The time zone a subject's or signal's times are shown in."""
        roster = self.rosters.get(study_id)
        return roster.zone(site_id) if roster is not None else UTC_ZONE

    async def session(self, request: Request) -> Session:
        """FastAPI dependency: the signed-in session, else off to the sign-in page."""
        session = await self.authenticator.session(request)
        if session is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise SignInRequired(target)
        return session


class NotInScope(HTTPException):
    """What :func:`not_found` raises: answered with the workspace's 404 page, the same for
    something absent and something outside the person's scope."""

    def __init__(self, session: Session) -> None:
        super().__init__(status_code=404, detail="Not found")
        self.session = session


def not_found_page(session: Session | None) -> HTMLResponse:
    """The one 404 page of the workspace: it names nothing that was asked for."""
    return render(
        "message.html",
        session,
        status=404,
        title="Not found",
        message="There is nothing at this address that you may see. Go back to your inbox "
        "or use the links above.",
    )


_chart_limiter: anyio.CapacityLimiter | None = None


def chart_limiter() -> anyio.CapacityLimiter:
    """The one limiter of chart drawing threads (made in the running event loop)."""
    global _chart_limiter
    if _chart_limiter is None:
        _chart_limiter = anyio.CapacityLimiter(CHART_THREADS)
    return _chart_limiter


def sign_in_url(next_url: str) -> str:
    return f"{PREFIX}/sign-in?next={quote(next_url, safe='')}"


def not_found(session: Session, page: str, **what: str | uuid.UUID | None) -> NoReturn:
    """The answer to anything outside the person's scope, or that does not exist: the same
    404 either way, and a log line naming who asked for what (ids only)."""
    WORKSPACE_OUT_OF_SCOPE.labels(page=page).inc()
    log.warning(
        "workspace.out_of_scope",
        person_id=session.viewer.person_id,
        page=page,
        **{key: str(value) for key, value in what.items() if value is not None},
    )
    raise NotInScope(session)


templates = Environment(
    loader=PackageLoader("services.notifier", "templates/workspace"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.globals["prefix"] = PREFIX
templates.filters["local_time"] = local_time
templates.filters["time_left"] = time_left


def render(
    template: str,
    session: Session | None,
    *,
    status: int = 200,
    **values: Any,
) -> HTMLResponse:
    """A page from ``templates/workspace/``, with the signed-in person (or None) in it."""
    body = templates.get_template(template).render(session=session, **values)
    return HTMLResponse(body, status_code=status)
