"""Signing in to the workspace through the real app on a real PostgreSQL (as the services'
role): password sign-in, lockout that does not tell why, the TOTP second factor, session
expiry on a movable clock, sign-out, CSRF, people taken off the roster, password changes
and the e-signature's re-authentication."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from structlog.testing import capture_logs

from services.notifier.domain import totp
from services.notifier.domain.roster import Roster
from services.notifier.entrypoints.workspace.common import SignatureRefused
from tests.support.notifier import ManualClock, roster
from tests.support.services import REPO
from tests.support.workspace_users import (
    browser,
    create_workspace_user,
    workspace_app,
    workspace_pool,
    workspace_settings,
)

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"
SAME_ANSWER = "the name or password is not right, or the account is locked"


@pytest.fixture
async def service_pool(fresh_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    async with workspace_pool(fresh_dsn) as pool:
        yield pool


async def sign_in(
    client: httpx.AsyncClient, name: str, password: str, next_url: str = "/workspace/account"
) -> httpx.Response:
    return await client.post(
        "/workspace/sign-in", data={"name": name, "password": password, "next": next_url}
    )


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None, "the page has no CSRF field"
    return found.group(1)


async def account_events(dsn: str) -> list[dict[str, Any]]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT payload FROM events WHERE stream_id = 'workspace-accounts' ORDER BY position"
        )
    finally:
        await connection.close()
    import json

    return [json.loads(row["payload"]) if isinstance(row["payload"], str) else dict(row["payload"])
            for row in rows]  # fmt: skip


async def test_a_roster_person_signs_in_by_email_and_is_sent_to_the_page_they_asked_for(
    fresh_dsn: str, service_pool: asyncpg.Pool
) -> None:
    await create_workspace_user(fresh_dsn, "pi1", PASSWORD)
    app, _ = workspace_app(service_pool, ManualClock())
    async with browser(app) as client:
        asked = await client.get("/workspace/account?tab=1")
        assert asked.status_code == 303
        assert (
            asked.headers["location"] == "/workspace/sign-in?next=%2Fworkspace%2Faccount%3Ftab%3D1"
        )
        page = await client.get(asked.headers["location"])
        assert page.status_code == 200
        assert 'value="/workspace/account?tab=1"' in page.text
        assert '<label for="sign-in-password">Password</label>' in page.text
        assert "institution" not in page.text  # no OIDC button unless configured
        with capture_logs() as logs:
            answer = await sign_in(client, "PI1@x.ORG", PASSWORD, "/workspace/account?tab=1")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/workspace/account?tab=1"
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith("vigil_session=")
        assert "HttpOnly" in cookie
        assert "Path=/workspace" in cookie
        assert "SameSite=lax" in cookie
        assert "Secure" not in cookie  # the public URL is http here
        token = client.cookies["vigil_session"]
        assert len(token) >= 43  # 256 bits, URL-safe base64
        mine = await client.get("/workspace/account")
        assert mine.status_code == 200
        assert "PI 1" in mine.text
        home = await client.get("/workspace/")
        assert home.headers["location"] == "/workspace/inbox"
    assert {"event": "workspace.signed_in", "person_id": "pi1", "method": "password",
            "log_level": "info"} in logs  # fmt: skip
    assert PASSWORD not in repr(logs)
    connection = await asyncpg.connect(fresh_dsn)
    try:
        stored = await connection.fetchval("SELECT token_sha256 FROM workspace_sessions")
        assert token.encode() not in bytes(stored)
        assert (
            await connection.fetchval(
                "SELECT count(*) FROM workspace_sessions WHERE token_sha256 = sha256($1::bytea)",
                token.encode(),
            )
            == 1
        )
    finally:
        await connection.close()


async def test_the_cookie_is_secure_when_the_public_url_is_https(
    fresh_dsn: str, service_pool: asyncpg.Pool
) -> None:
    await create_workspace_user(fresh_dsn, "pi1", PASSWORD)
    settings = workspace_settings(public_base_url="https://vigil.example")
    app, _ = workspace_app(service_pool, ManualClock(), settings=settings)
    async with browser(app) as client:
        answer = await sign_in(client, "pi1", PASSWORD)
    assert "Secure" in answer.headers["set-cookie"]


@pytest.mark.parametrize(
    "next_url", ["https://evil.example/", "//evil.example/x", "/metrics", "/\\evil.example"]
)
async def test_next_never_leads_off_the_workspace(
    fresh_dsn: str, service_pool: asyncpg.Pool, next_url: str
) -> None:
    await create_workspace_user(fresh_dsn, "pi1", PASSWORD)
    app, _ = workspace_app(service_pool, ManualClock())
    async with browser(app) as client:
        page = await client.get("/workspace/sign-in", params={"next": next_url})
        assert 'name="next" value="/workspace/"' in page.text
        answer = await sign_in(client, "pi1", PASSWORD, next_url)
    assert answer.headers["location"] == "/workspace/"


async def test_five_wrong_passwords_lock_the_account_and_every_refusal_reads_the_same(
    fresh_dsn: str, service_pool: asyncpg.Pool
) -> None:
    await create_workspace_user(fresh_dsn, "pi1", PASSWORD)
    clock = ManualClock()
    app, _ = workspace_app(service_pool, clock)
    async with browser(app) as client:
        unknown = await sign_in(client, "nobody", PASSWORD)
        with capture_logs() as logs:
            wrong = [await sign_in(client, "pi1", f"wrong password {n}") for n in range(5)]
        locked = await sign_in(client, "pi1", PASSWORD)
        answers = [unknown, *wrong, locked]
        assert {a.status_code for a in answers} == {401}
        assert len({a.text for a in answers}) == 1, "the refusals must not tell why"
        assert SAME_ANSWER in unknown.text
        assert "vigil_session" not in client.cookies
        # the lock ends after 15 minutes
        clock.advance(minutes=14, seconds=59)
        assert (await sign_in(client, "pi1", PASSWORD)).status_code == 401
        clock.advance(seconds=1)
        assert (await sign_in(client, "pi1", PASSWORD)).status_code == 303
    assert [e["event"] for e in logs].count("workspace.sign_in_failed") == 4
    assert any(e["event"] == "workspace.account_locked" and e["person_id"] == "pi1" for e in logs)
    assert "wrong password" not in repr(logs)
    changes = [e["change"] for e in await account_events(fresh_dsn)]
    assert changes == ["password-set", "locked"]


async def test_a_second_factor_is_enrolled_from_the_account_page_then_asked_at_sign_in(
    fresh_dsn: str, service_pool: asyncpg.Pool
) -> None:
    await create_workspace_user(fresh_dsn, "pi1", PASSWORD)
    clock = ManualClock()
    app, authenticator = workspace_app(service_pool, clock)
    async with browser(app) as client:
        await sign_in(client, "pi1", PASSWORD)
        page = await client.get("/workspace/account")
        assert "Set up a second factor" in page.text
        csrf = csrf_of(page)
        begun = await client.post("/workspace/account", data={"csrf": csrf, "action": "begin-totp"})
        assert begun.status_code == 303
        page = await client.get("/workspace/account")
        found = re.search(r'<code class="secret">([A-Z2-7]+)</code>', page.text)
        assert found is not None
        secret = found.group(1)
        assert '<svg width="' in page.text
        assert 'class="qr"' in page.text
        assert "<title>QR code of the second-factor secret</title>" in page.text
        # the secret is stored sealed, never as text
        connection = await asyncpg.connect(fresh_dsn)
        try:
            sealed = await connection.fetchval("SELECT totp_pending FROM workspace_accounts")
        finally:
            await connection.close()
        assert secret.encode() not in bytes(sealed)
        refused = await client.post(
            "/workspace/account", data={"csrf": csrf, "action": "confirm-totp", "code": "000000"}
        )
        assert refused.status_code == 422
        assert "One-time code:" in refused.text
        enrolment_code = totp.code_at(secret, clock.now())
        enabled = await client.post(
            "/workspace/account",
            data={"csrf": csrf, "action": "confirm-totp", "code": enrolment_code},
        )
        assert "Second factor enabled" in enabled.text
        await client.post("/workspace/sign-out", data={"csrf": csrf})

        first = await sign_in(client, "pi1", PASSWORD, "/workspace/account?x=2")
        assert first.headers["location"] == "/workspace/sign-in/code"
        # half signed in opens nothing
        assert (await client.get("/workspace/account")).status_code == 303
        # the code used to enrol cannot be used again
        replay = await client.post("/workspace/sign-in/code", data={"code": enrolment_code})
        assert replay.status_code == 401
        clock.advance(seconds=30)
        done = await client.post(
            "/workspace/sign-in/code", data={"code": totp.code_at(secret, clock.now())}
        )
        assert done.status_code == 303
        assert done.headers["location"] == "/workspace/account?x=2"
        page = await client.get("/workspace/account")
        assert "Enabled since" in page.text
        session = await authenticator.session(_request_with(client.cookies["vigil_session"]))
        assert session is not None
    changes = [e["change"] for e in await account_events(fresh_dsn)]
    assert changes == ["password-set", "totp-enrolled"]


def _request_with(token: str) -> Any:
    from starlette.requests import Request

    cookie = f"vigil_session={token}".encode()
    return Request({"type": "http", "headers": [(b"cookie", cookie)], "method": "GET",
                    "path": "/workspace/"})  # fmt: skip


async def test_a_session_ends_after_30_idle_minutes_and_after_12_hours_however_used(
    fresh_dsn: str, service_pool: asyncpg.Pool
) -> None:
    await create_workspace_user(fresh_dsn, "pi1", PASSWORD)
    clock = ManualClock()
    app, _ = workspace_app(service_pool, clock)
    async with browser(app) as client:
        await sign_in(client, "pi1", PASSWORD)
        clock.advance(minutes=29)
        assert (await client.get("/workspace/account")).status_code == 200
        clock.advance(minutes=29)  # 58 minutes in, but used 29 minutes ago
        assert (await client.get("/workspace/account")).status_code == 200
        clock.advance(minutes=30)
        idle = await client.get("/workspace/account")
        assert idle.status_code == 303
        assert idle.headers["location"].startswith("/workspace/sign-in?next=")

        await sign_in(client, "pi1", PASSWORD)
        for _ in range(12 * 3 - 1):
            clock.advance(minutes=20)
            assert (await client.get("/workspace/account")).status_code == 200
        clock.advance(minutes=20)  # 12 hours after sign-in
        assert (await client.get("/workspace/account")).status_code == 303


async def test_sign_out_needs_the_forms_token_and_ends_the_session(
    fresh_dsn: str, service_pool: asyncpg.Pool
) -> None:
    await create_workspace_user(fresh_dsn, "pi1", PASSWORD)
    app, _ = workspace_app(service_pool, ManualClock())
    async with browser(app) as client:
        await sign_in(client, "pi1", PASSWORD)
        token = client.cookies["vigil_session"]
        page = await client.get("/workspace/account")
        forged = await client.post("/workspace/sign-out", data={"csrf": "guessed"})
        assert forged.status_code == 403
        missing = await client.post("/workspace/sign-out")
        assert missing.status_code == 403
        cross_site = await client.post(
            "/workspace/sign-out", data={"csrf": csrf_of(page)},
            headers={"sec-fetch-site": "cross-site"},
        )  # fmt: skip
        assert cross_site.status_code == 403
        assert (await client.get("/workspace/account")).status_code == 200
        out = await client.post("/workspace/sign-out", data={"csrf": csrf_of(page)})
        assert out.status_code == 303
        assert "vigil_session" not in client.cookies
        signed_out = await client.get(out.headers["location"])
        assert "You are signed out" in signed_out.text
    async with browser(app) as thief:  # the old token, kept by someone
        thief.cookies.set("vigil_session", token, path="/workspace")
        assert (await thief.get("/workspace/account")).status_code == 303


async def test_someone_taken_off_the_roster_cannot_sign_in_and_their_sessions_stop(
    fresh_dsn: str, service_pool: asyncpg.Pool
) -> None:
    await create_workspace_user(fresh_dsn, "pi2", PASSWORD)
    clock = ManualClock()
    before, _ = workspace_app(service_pool, clock)
    async with browser(before) as client:
        await sign_in(client, "pi2", PASSWORD)
        token = client.cookies["vigil_session"]
    data = roster().model_dump(mode="json")
    data["sites"] = [site for site in data["sites"] if site["id"] != "S2"]
    after, _ = workspace_app(service_pool, clock, Roster.model_validate(data))
    async with browser(after) as client:
        client.cookies.set("vigil_session", token, path="/workspace")
        assert (await client.get("/workspace/account")).status_code == 303
        refused = await sign_in(client, "pi2", PASSWORD)
        assert refused.status_code == 401
        assert SAME_ANSWER in refused.text


async def test_changing_the_password_ends_the_persons_other_sessions(
    fresh_dsn: str, service_pool: asyncpg.Pool
) -> None:
    await create_workspace_user(fresh_dsn, "pi1", PASSWORD)
    app, _ = workspace_app(service_pool, ManualClock())
    async with browser(app) as phone, browser(app) as desk:
        await sign_in(phone, "pi1", PASSWORD)
        await sign_in(desk, "pi1", PASSWORD)
        page = await desk.get("/workspace/account")
        form = {"csrf": csrf_of(page), "action": "change-password", "current": PASSWORD}
        short = await desk.post(
            "/workspace/account", data={**form, "new": "short", "again": "short"}
        )
        assert short.status_code == 422
        assert "New password: the password must have at least 12 characters" in short.text
        assert "short</" not in short.text
        new = "a new and longer passphrase"
        changed = await desk.post("/workspace/account", data={**form, "new": new, "again": new})
        assert "Password changed" in changed.text
        assert (await desk.get("/workspace/account")).status_code == 200
        assert (await phone.get("/workspace/account")).status_code == 303
        assert (await sign_in(phone, "pi1", PASSWORD)).status_code == 401
        assert (await sign_in(phone, "pi1", new)).status_code == 303
    changes = [e["change"] for e in await account_events(fresh_dsn)]
    assert changes == ["password-set", "password-changed"]
    assert all(e["changed_by"] in {"tests", "person:pi1"} for e in await account_events(fresh_dsn))


async def test_a_signer_confirms_with_password_and_code_and_failures_count_to_the_lock(
    fresh_dsn: str, service_pool: asyncpg.Pool
) -> None:
    await create_workspace_user(fresh_dsn, "pi1", PASSWORD)
    clock = ManualClock()
    app, authenticator = workspace_app(service_pool, clock)
    async with browser(app) as client:
        await sign_in(client, "pi1", PASSWORD)
        session = await authenticator.session(_request_with(client.cookies["vigil_session"]))
        assert session is not None
        assert await authenticator.confirm_signer(session, PASSWORD, None) == "password"
        secret = await authenticator.begin_totp("pi1")
        assert secret is not None
        assert await authenticator.confirm_totp("pi1", totp.code_at(secret, clock.now()))
        clock.advance(seconds=30)
        with pytest.raises(SignatureRefused, match=r"^code: "):
            await authenticator.confirm_signer(session, PASSWORD, None)
        code = totp.code_at(secret, clock.now())
        assert await authenticator.confirm_signer(session, PASSWORD, code) == "password+totp"
        with pytest.raises(SignatureRefused, match=r"^code: "):  # the same code twice
            await authenticator.confirm_signer(session, PASSWORD, code)
        for _ in range(4):  # with the replayed code, five failures in a row since the success
            with pytest.raises(SignatureRefused, match=r"^password: not the signer's password"):
                await authenticator.confirm_signer(session, "not it at all", code)
        # the fifth failure locked the account: even the right password and code are refused
        clock.advance(seconds=30)
        with pytest.raises(SignatureRefused, match="locked"):
            await authenticator.confirm_signer(session, PASSWORD, totp.code_at(secret, clock.now()))
        assert (await sign_in(client, "pi1", PASSWORD)).status_code == 401


async def test_each_role_lands_on_its_own_first_page(
    fresh_dsn: str, service_pool: asyncpg.Pool
) -> None:
    data = roster().model_dump(mode="json")
    data["study_contacts"].append(
        {"id": "dm", "name": "DM", "role": "data_manager", "channels": [{"email": "dm@x.org"}]}
    )
    for person_id in ("dm", "mm", "sub1"):
        await create_workspace_user(fresh_dsn, person_id, PASSWORD)
    app, _ = workspace_app(service_pool, ManualClock(), Roster.model_validate(data))
    landed = {}
    for person_id in ("dm", "mm", "sub1"):
        async with browser(app) as client:
            await sign_in(client, person_id, PASSWORD)
            landed[person_id] = (await client.get("/workspace/")).headers["location"]
    assert landed == {
        "dm": "/workspace/data-quality",
        "mm": "/workspace/inbox",
        "sub1": "/workspace/inbox",
    }


async def test_oversized_or_missing_fields_are_named_and_not_echoed(
    fresh_dsn: str, service_pool: asyncpg.Pool
) -> None:
    app, _ = workspace_app(service_pool, ManualClock())
    async with browser(app) as client:
        long_name = "n" * 300 + "-marker"
        answer = await sign_in(client, long_name, PASSWORD)
        assert answer.status_code == 422
        assert "Name or e-mail: at most 254 characters" in answer.text
        assert "-marker" not in answer.text
        missing = await sign_in(client, "pi1", "")
        assert "Password: required" in missing.text
        huge = await client.post(
            "/workspace/sign-in", content=b"name=" + b"x" * 20_000,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )  # fmt: skip
        assert huge.status_code == 413


async def test_the_notifier_refuses_to_start_in_production_without_the_workspace_key(
    service_pool: asyncpg.Pool,
) -> None:
    from services.notifier.adapters.secret_box import WorkspaceKeyRefused

    with pytest.raises(WorkspaceKeyRefused, match="VIGIL_WORKSPACE_SECRET_KEY"):
        workspace_app(service_pool, ManualClock(), settings=workspace_settings(
            workspace_secret_key=None))  # fmt: skip


async def test_vigil_notifier_in_production_exits_2_naming_the_missing_workspace_key(
    tmp_path: Path,
) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO),
        "VIGIL_ENVIRONMENT": "production",
        "VIGIL_DATABASE_URL": "postgresql://vigil_app@127.0.0.1:1/vigil",
        "VIGIL_KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "VIGIL_STUDY_DIR": str(REPO / "studies"),
        "VIGIL_METRICS_TOKEN": "m" * 40,
        "VIGIL_NOTIFIER_LINK_KEYS": f"k1:{'l' * 40}",
    }
    refused = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "vigil", "notifier"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert "VIGIL_WORKSPACE_SECRET_KEY" in refused.stderr
    half_oidc = {**env, "VIGIL_WORKSPACE_SECRET_KEY": "w" * 40,
                 "VIGIL_WORKSPACE_OIDC_ISSUER": "https://idp.example"}  # fmt: skip
    refused = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "vigil", "notifier"],
        env=half_oidc, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert "VIGIL_WORKSPACE_OIDC_CLIENT_ID" in refused.stderr


async def test_a_second_factor_sealed_under_another_key_refuses_the_code_and_says_why(
    fresh_dsn: str, service_pool: asyncpg.Pool
) -> None:
    await create_workspace_user(fresh_dsn, "pi1", PASSWORD)
    clock = ManualClock()
    _, before = workspace_app(service_pool, clock)
    secret = await before.begin_totp("pi1")
    assert secret is not None
    assert await before.confirm_totp("pi1", totp.code_at(secret, clock.now()))
    clock.advance(seconds=30)
    rotated, _ = workspace_app(
        service_pool, clock, settings=workspace_settings(workspace_secret_key="r" * 40)
    )
    async with browser(rotated) as client:
        assert (await sign_in(client, "pi1", PASSWORD)).status_code == 303
        with capture_logs() as logs:
            answer = await client.post(
                "/workspace/sign-in/code", data={"code": totp.code_at(secret, clock.now())}
            )
        assert answer.status_code == 401
    assert any(
        e["event"] == "workspace.totp_secret_unreadable" and "reset-totp" in e["problem"]
        for e in logs
    )
