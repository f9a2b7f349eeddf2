"""Workspace pages: sign-in (password, then the one-time code when enrolled, or the sites'
OpenID Connect provider), sign-out, the landing redirect, and the account page (second
factor enrolment, password change).

Routes translate and delegate: the rules are in :mod:`.sign_in` and
:mod:`services.notifier.domain.accounts`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import segno
import structlog
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from services.notifier.adapters import workspace_accounts as store
from services.notifier.adapters.oidc import OidcClient, OidcRefused, oidc_config
from services.notifier.adapters.secret_box import workspace_secret_box
from services.notifier.domain import totp
from services.notifier.domain.accounts import (
    PASSWORD_MAX_LENGTH,
    SIGN_IN_NAME_MAX_LENGTH,
    LockoutPolicy,
    SessionLifetime,
    landing_page,
    local_next,
    person_named,
    person_with_email,
)
from services.notifier.domain.site_time import UTC_ZONE
from services.notifier.domain.workspace_access import viewer_for
from services.notifier.entrypoints.workspace.common import (
    PREFIX,
    SESSION_COOKIE,
    Authenticator,
    Session,
    WorkspaceDeps,
    render,
)
from services.notifier.entrypoints.workspace.sign_in import (
    PasswordChangeRefused,
    SecondFactorNeeded,
    SignedIn,
    WorkspaceSignIn,
    session_token,
)
from services.notifier.handlers.context import NotifierContext
from services.settings import VigilSettings

log = structlog.get_logger(__name__)

SIGN_IN_REFUSED = (
    "Sign-in failed: the name or password is not right, or the account is locked after "
    "repeated failures. Check both and try again, or ask your study administrator."
)
CODE_REFUSED = (
    "Sign-in failed: the one-time code is not right (or was used already), or the account "
    "is locked. Enter the current code from your authenticator app."
)
SIGN_IN_FORM_BYTES = 8 * 1024
OIDC_WINDOW = timedelta(minutes=10)
CODE_MAX_LENGTH = 20


def authenticator(
    pool: Callable[[], asyncpg.Pool], context: NotifierContext, settings: VigilSettings
) -> Authenticator:
    """What reads the session cookie of each workspace request (refuses, in production, to
    start without VIGIL_WORKSPACE_SECRET_KEY; and with half an OIDC configuration)."""
    oidc_config(settings)  # an incomplete OIDC configuration stops the start here
    return WorkspaceSignIn(
        pool,
        context.rosters,
        context.clock,
        workspace_secret_box(settings),
        LockoutPolicy(
            settings.workspace_sign_in_attempts,
            timedelta(minutes=settings.workspace_lockout_minutes),
        ),
        SessionLifetime(
            idle=timedelta(minutes=settings.workspace_session_idle_minutes),
            absolute=timedelta(hours=settings.workspace_session_hours),
        ),
    )


class FieldTooLong(ValueError):
    """A form field is longer than it may be; the message names the field."""


def _field(form: FormData, name: str, label: str, limit: int) -> str:
    value = form.get(name)
    text = value if isinstance(value, str) else ""
    if len(text) > limit:
        raise FieldTooLong(f"{label}: at most {limit} characters")
    return text


async def _form(request: Request, limit: int = SIGN_IN_FORM_BYTES) -> FormData:
    """The posted form, refused (413) when larger than ``limit`` and (403) when another site
    posted it (browsers say so in Sec-Fetch-Site)."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise HTTPException(status_code=403, detail="Forms are accepted from this site only.")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise HTTPException(status_code=413, detail="The form is too large.")
    return await request.form(max_files=0, max_fields=10, max_part_size=limit)


def _check_csrf(form: FormData, session: Session) -> None:
    sent = form.get("csrf")
    if not isinstance(sent, str) or not secrets.compare_digest(sent, session.csrf):
        log.warning("workspace.csrf_refused", person_id=session.viewer.person_id)
        raise HTTPException(
            status_code=403,
            detail="The form's security token is missing or stale: reload the page and try again.",
        )


def router(deps: WorkspaceDeps) -> APIRouter:
    """The account routes (sign-in needs the real WorkspaceSignIn; page tests that sign in
    with a fixed authenticator get the landing redirect and sign-out only)."""
    routes = APIRouter()
    # FastAPI reads the dependency from the default (annotations are strings here)
    signed_in_session = Depends(deps.session)
    secure = deps.settings.notifier_public_url.startswith("https://")

    def set_cookie(response: Response, token: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            token,
            httponly=True,
            samesite="lax",
            secure=secure,
            path=PREFIX,
        )

    def clear_cookie(response: Response) -> None:
        response.delete_cookie(
            SESSION_COOKIE, path=PREFIX, httponly=True, samesite="lax", secure=secure
        )

    def signed_in(outcome: SignedIn) -> Response:
        response = RedirectResponse(outcome.next_url, status_code=303)
        set_cookie(response, outcome.token)
        return response

    @routes.get("/")
    async def landing(session: Session = signed_in_session) -> Response:
        return RedirectResponse(landing_page(session.viewer), status_code=303)

    @routes.post("/sign-out")
    async def sign_out(request: Request, session: Session = signed_in_session) -> Response:
        form = await _form(request)
        _check_csrf(form, session)
        token = session_token(request)
        if isinstance(deps.authenticator, WorkspaceSignIn) and token is not None:
            await deps.authenticator.sign_out(token, session.viewer.person_id)
        response = RedirectResponse(f"{PREFIX}/sign-in?signed_out=1", status_code=303)
        clear_cookie(response)
        return response

    if not isinstance(deps.authenticator, WorkspaceSignIn):
        return routes
    accounts: WorkspaceSignIn = deps.authenticator
    oidc_settings = oidc_config(deps.settings)
    oidc = OidcClient(oidc_settings) if oidc_settings is not None else None

    def sign_in_page(next_url: str, *, error: str | None = None, status: int = 200) -> Response:
        return render(
            "sign_in.html",
            None,
            status=status,
            title="Sign in",
            next_url=next_url,
            error=error,
            oidc=oidc is not None,
            signed_out=False,
        )

    @routes.get("/sign-in")
    async def sign_in_form(request: Request) -> Response:
        next_url = local_next(request.query_params.get("next"))
        if await accounts.session(request) is not None:
            return RedirectResponse(next_url, status_code=303)
        response = render(
            "sign_in.html",
            None,
            title="Sign in",
            next_url=next_url,
            error=None,
            oidc=oidc is not None,
            signed_out=request.query_params.get("signed_out") == "1",
        )
        return response

    @routes.post("/sign-in")
    async def sign_in(request: Request) -> Response:
        form = await _form(request)
        next_url = local_next(_text(form, "next"))
        try:
            name = _field(form, "name", "Name or e-mail", SIGN_IN_NAME_MAX_LENGTH)
            password = _field(form, "password", "Password", PASSWORD_MAX_LENGTH)
        except FieldTooLong as error:
            return sign_in_page(next_url, error=str(error), status=422)
        if not name or not password:
            missing = "Name or e-mail" if not name else "Password"
            return sign_in_page(next_url, error=f"{missing}: required", status=422)
        outcome = await accounts.sign_in(person_named(name, deps.rosters), password, next_url)
        if isinstance(outcome, SignedIn):
            return signed_in(outcome)
        if isinstance(outcome, SecondFactorNeeded):
            response = RedirectResponse(f"{PREFIX}/sign-in/code", status_code=303)
            set_cookie(response, outcome.token)
            return response
        return sign_in_page(next_url, error=SIGN_IN_REFUSED, status=401)

    @routes.get("/sign-in/code")
    async def code_form(request: Request) -> Response:
        return render("sign_in_code.html", None, title="Enter your one-time code", error=None)

    @routes.post("/sign-in/code")
    async def code(request: Request) -> Response:
        form = await _form(request)
        try:
            typed = _field(form, "code", "One-time code", CODE_MAX_LENGTH)
        except FieldTooLong as error:
            return render(
                "sign_in_code.html",
                None,
                status=422,
                title="Enter your one-time code",
                error=str(error),
            )
        outcome = await accounts.second_factor(session_token(request), typed)
        if outcome is None:
            response = RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
            clear_cookie(response)
            return response
        if isinstance(outcome, SignedIn):
            return signed_in(outcome)
        return render(
            "sign_in_code.html",
            None,
            status=401,
            title="Enter your one-time code",
            error=CODE_REFUSED,
        )

    @routes.get("/sign-in/oidc")
    async def oidc_start(request: Request) -> Response:
        if oidc is None:
            raise HTTPException(status_code=404, detail="Not found")
        next_url = local_next(request.query_params.get("next"))
        try:
            start = await oidc.start(_callback_url(request, deps))
        except OidcRefused as error:
            log.warning("workspace.oidc_unavailable", problem=str(error))
            return sign_in_page(
                next_url,
                error="The identity provider cannot be reached now; sign in with your "
                "workspace password, or try again later.",
                status=502,
            )
        async with deps.pool().acquire() as connection:
            await store.store_oidc_login(
                connection,
                start.state,
                store.OidcLogin(start.nonce, start.code_verifier, next_url),
                accounts.clock.now() + OIDC_WINDOW,
            )
        return RedirectResponse(start.url, status_code=303)

    @routes.get("/sign-in/oidc/callback")
    async def oidc_callback(request: Request) -> Response:
        if oidc is None:
            raise HTTPException(status_code=404, detail="Not found")
        state = request.query_params.get("state", "")[:200]
        code_value = request.query_params.get("code", "")[:2000]
        refused = "Sign-in with your identity provider failed; try again, or sign in with your "
        refused += "workspace password."
        if not state or not code_value:
            return sign_in_page(local_next(None), error=refused, status=400)
        async with deps.pool().acquire() as connection:
            login = await store.take_oidc_login(connection, state, accounts.clock.now())
        if login is None:
            log.warning("workspace.oidc_refused", problem="unknown, used or expired state")
            return sign_in_page(local_next(None), error=refused, status=400)
        try:
            claims = await oidc.finish(
                code_value, login.code_verifier, login.nonce, _callback_url(request, deps)
            )
        except OidcRefused as error:
            log.warning("workspace.oidc_refused", problem=str(error))
            return sign_in_page(login.next_url, error=refused, status=401)
        person_id = _oidc_person(claims, oidc.config.claim, deps)
        if person_id is None:
            log.warning("workspace.oidc_refused", problem="no roster person matches")
            return sign_in_page(
                login.next_url,
                error="Your identity provider account matches no one on the study rosters; "
                "ask your study administrator.",
                status=403,
            )
        return signed_in(await accounts.sign_in_verified(person_id, "oidc", login.next_url))

    @routes.get("/account")
    async def account_page(session: Session = signed_in_session) -> Response:
        return await _account_page(deps, accounts, session)

    @routes.post("/account")
    async def account_change(request: Request, session: Session = signed_in_session) -> Response:
        form = await _form(request)
        _check_csrf(form, session)
        person_id = session.viewer.person_id
        action = _text(form, "action")
        if action == "begin-totp":
            await accounts.begin_totp(person_id)
            return RedirectResponse(f"{PREFIX}/account", status_code=303)
        if action == "confirm-totp":
            typed = _text(form, "code")[:CODE_MAX_LENGTH]
            if await accounts.confirm_totp(person_id, typed):
                notice = "Second factor enabled: sign-in now asks for a code."
                return await _account_page(deps, accounts, session, notice=notice)
            return await _account_page(
                deps,
                accounts,
                session,
                error="One-time code: not the current code of this secret; check the app's "
                "clock and enter the newest code.",
                status=422,
            )
        if action == "change-password":
            token = session_token(request) or ""
            try:
                await accounts.change_password(
                    person_id,
                    token,
                    _field(form, "current", "Current password", PASSWORD_MAX_LENGTH),
                    _field(form, "new", "New password", PASSWORD_MAX_LENGTH),
                    _field(form, "again", "New password, again", PASSWORD_MAX_LENGTH),
                )
            except (PasswordChangeRefused, FieldTooLong) as error:
                return await _account_page(deps, accounts, session, error=str(error), status=422)
            return await _account_page(
                deps, accounts, session, notice="Password changed; your other sessions have ended."
            )
        return await _account_page(deps, accounts, session, error="Action: unknown", status=422)

    return routes


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _callback_url(request: Request, deps: WorkspaceDeps) -> str:
    """Where the identity provider sends the browser back: on the notifier's public address
    (what the provider has registered), not whatever host this request came in on."""
    base = deps.settings.notifier_public_url.rstrip("/")
    return base + str(request.app.url_path_for("oidc_callback"))


def _oidc_person(claims: dict[str, Any], claim: str, deps: WorkspaceDeps) -> str | None:
    value = claims.get(claim)
    if not isinstance(value, str) or not value or len(value) > SIGN_IN_NAME_MAX_LENGTH:
        return None
    if claim == "email":
        if claims.get("email_verified") is False:
            return None
        return person_with_email(value, deps.rosters)
    return value if viewer_for(value, deps.rosters) is not None else None


def _home_zone(deps: WorkspaceDeps, session: Session) -> ZoneInfo:
    """The zone of the person's own site (their study's for study-level people)."""
    viewer = session.viewer
    for study_id in viewer.studies():
        sites = viewer.sites(study_id)
        return deps.zone(study_id, min(sites) if sites else None)
    return UTC_ZONE


async def _account_page(
    deps: WorkspaceDeps,
    accounts: WorkspaceSignIn,
    session: Session,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    person_id = session.viewer.person_id
    account = await accounts.account(person_id)
    pending = await accounts.pending_totp(person_id)
    qr_svg = None
    if pending is not None:
        uri = totp.provisioning_uri(pending, person_id)
        qr_svg = segno.make(uri, error="m").svg_inline(
            scale=4, title="QR code of the second-factor secret", svgclass="qr", border=4
        )
    return render(
        "account.html",
        session,
        status=status,
        title="Your account",
        account=account,
        pending_secret=pending,
        qr_svg=qr_svg,
        notice=notice,
        error=error,
        zone=_home_zone(deps, session),
    )
