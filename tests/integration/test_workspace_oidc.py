"""Signing in through the sites' OpenID Connect provider: a real provider on a loopback port
(tests/support/oidc_provider.py), the workspace app on a real PostgreSQL. Authorization
code with PKCE, state and nonce checked, the ID token's signature checked against the
provider's JWKS, and an identity that matches no roster person refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest
from structlog.testing import capture_logs

from tests.support.notifier import ManualClock
from tests.support.oidc_provider import CLIENT_ID, CLIENT_SECRET, OidcProvider, oidc_provider
from tests.support.workspace_users import (
    browser,
    workspace_app,
    workspace_pool,
    workspace_settings,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def service_pool(fresh_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    async with workspace_pool(fresh_dsn) as pool:
        yield pool


@pytest.fixture
async def provider() -> AsyncIterator[OidcProvider]:
    async with oidc_provider() as running:
        yield running


async def through_the_provider(client: httpx.AsyncClient, next_url: str) -> httpx.Response:
    """Start at the workspace, pass the provider (a real HTTP round trip), and come back to
    the workspace's callback; returns the workspace's answer to the callback."""
    start = await client.get("/workspace/sign-in/oidc", params={"next": next_url})
    assert start.status_code == 303, start.text
    async with httpx.AsyncClient() as outside:
        at_provider = await outside.get(start.headers["location"])
    assert at_provider.status_code == 302, at_provider.text
    back = urlsplit(at_provider.headers["location"])
    return await client.get(f"{back.path}?{back.query}")


def oidc_app(pool: asyncpg.Pool, provider: OidcProvider) -> httpx.AsyncClient:
    settings = workspace_settings(
        workspace_oidc_issuer=provider.issuer,
        workspace_oidc_client_id=CLIENT_ID,
        workspace_oidc_client_secret=CLIENT_SECRET,
    )
    app, _ = workspace_app(pool, ManualClock(), settings=settings)
    return browser(app)


async def test_a_roster_person_signs_in_through_the_provider_with_pkce_state_and_nonce(
    service_pool: asyncpg.Pool, provider: OidcProvider
) -> None:
    provider.claims = {"sub": "idp-123", "email": "PI1@X.org", "email_verified": True}
    async with oidc_app(service_pool, provider) as client:
        page = await client.get("/workspace/sign-in")
        assert "Sign in with your institution" in page.text
        with capture_logs() as logs:
            answer = await through_the_provider(client, "/workspace/account?from=idp")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/workspace/account?from=idp"
        mine = await client.get("/workspace/account")
        assert mine.status_code == 200
        assert "PI 1" in mine.text
        # what the workspace asked the provider for
        asked = provider.authorize_requests[-1]
        assert asked["code_challenge_method"] == "S256"
        assert len(asked["state"]) >= 40
        assert len(asked["nonce"]) >= 40
        assert asked["redirect_uri"] == "http://test/workspace/sign-in/oidc/callback"
        assert asked["scope"].split()[0] == "openid"
        # the same answer again (a replayed state) is refused
        replay_query = parse_qs(urlsplit(answer.request.url.raw_path.decode()).query)
        replay = await client.get(
            "/workspace/sign-in/oidc/callback",
            params={"state": replay_query["state"][0], "code": replay_query["code"][0]},
        )
        assert replay.status_code == 400
    assert any(e["event"] == "workspace.signed_in" and e["method"] == "oidc" for e in logs)


async def test_an_identity_that_matches_no_roster_person_is_refused(
    service_pool: asyncpg.Pool, provider: OidcProvider
) -> None:
    provider.claims = {"sub": "idp-9", "email": "stranger@elsewhere.org", "email_verified": True}
    async with oidc_app(service_pool, provider) as client:
        answer = await through_the_provider(client, "/workspace/account")
        assert answer.status_code == 403
        assert "matches no one on the study rosters" in answer.text
        assert "stranger@elsewhere.org" not in answer.text
        assert "vigil_session" not in client.cookies


@pytest.mark.parametrize("fault", ["sign_with_other_key", "wrong_nonce"])
async def test_an_id_token_with_a_forged_signature_or_another_nonce_is_refused(
    service_pool: asyncpg.Pool, provider: OidcProvider, fault: str
) -> None:
    provider.claims = {"sub": "idp-123", "email": "pi1@x.org", "email_verified": True}
    setattr(provider, fault, True)
    async with oidc_app(service_pool, provider) as client:
        with capture_logs() as logs:
            answer = await through_the_provider(client, "/workspace/account")
        assert answer.status_code == 401
        assert "vigil_session" not in client.cookies
        assert (await client.get("/workspace/account")).status_code == 303
    assert any(
        e["event"] == "workspace.oidc_refused" and "ID token is not valid" in e["problem"]
        for e in logs
    )


async def test_a_callback_with_a_state_the_workspace_never_issued_is_refused(
    service_pool: asyncpg.Pool, provider: OidcProvider
) -> None:
    async with oidc_app(service_pool, provider) as client:
        answer = await client.get(
            "/workspace/sign-in/oidc/callback", params={"state": "made-up", "code": "x"}
        )
        assert answer.status_code == 400
        assert "vigil_session" not in client.cookies


async def test_without_oidc_settings_there_is_no_button_and_no_route(
    service_pool: asyncpg.Pool,
) -> None:
    app, _ = workspace_app(service_pool, ManualClock())
    async with browser(app) as client:
        assert "institution" not in (await client.get("/workspace/sign-in")).text
        assert (await client.get("/workspace/sign-in/oidc")).status_code == 404
