"""OWASP API8:2023 security misconfiguration: the old acknowledgement link page and the
API, through a real notifier process over real HTTP.

The old page was opened from an e-mail with a live token in its address; messages sent
before the workspace still carry such links. Its answers (a redirect to the workspace, a
refusal) and the API's must not be cached, leak the address in a Referer, run script, be
framed, or record anything.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from tests.support.acknowledgement_stack import (
    INVESTIGATOR,
    AcknowledgementStack,
    acknowledgement_types,
    api_acknowledge,
    page,
    page_acknowledge,
    plan,
    raised_now,
    tokens_sent,
)
from tests.support.notifier import signal_of

pytestmark = pytest.mark.integration
PI, PI_MAIL = INVESTIGATOR
EXPECTED = {
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
}


def policy(response: httpx.Response) -> dict[str, list[str]]:
    """The Content-Security-Policy as directive -> sources."""
    directives = [d.split() for d in response.headers["content-security-policy"].split(";")]
    return {d[0]: d[1:] for d in directives if d}


def assert_locked_down(response: httpx.Response, what: str) -> None:
    for name, value in EXPECTED.items():
        assert response.headers.get(name) == value, (what, name, response.headers.get(name))
    csp = policy(response)
    assert csp["default-src"] == ["'none'"], what
    assert csp["frame-ancestors"] == ["'none'"], what
    assert csp["form-action"] == ["'self'"], what
    assert csp["base-uri"] == ["'none'"], what
    assert "script-src" not in csp, what  # default-src 'none': no script at all
    (style,) = csp["style-src"]
    assert style.startswith("'sha256-"), what
    assert "unsafe" not in response.headers["content-security-policy"], what


async def test_every_answer_of_the_old_link_page_and_the_api_carries_the_security_headers(
    notifier: AcknowledgementStack, notifier_db: asyncpg.Pool
) -> None:
    envelope, other = raised_now(), raised_now()
    await plan(notifier_db, notifier, envelope, other)
    (token,) = await tokens_sent(notifier, notifier_db, envelope, PI_MAIL)
    (other_token,) = await tokens_sent(notifier, notifier_db, other, PI_MAIL)
    signal_id = signal_of(envelope).signal_id
    form = {"token": token, "assessment": "clinically-significant"}
    async with notifier.client() as client:
        answers = {
            "old link GET": await page(client, envelope, token),
            "old link GET, altered": await page(client, envelope, "x" + token),
            "old link GET, no token": await client.get(f"/signals/{signal_id}/acknowledge"),
            "old link POST": await page_acknowledge(client, envelope, form),
            "old link POST, too large": await page_acknowledge(
                client, envelope, {**form, "comment": "x" * 100_000}
            ),
            "API POST": await api_acknowledge(client, other, other_token, "sae-confirmed"),
            "API POST again": await api_acknowledge(client, other, other_token, "sae-confirmed"),
            "API POST, invalid": await client.post(
                f"/v1/signals/{signal_id}/acknowledgements", json={"token": token}
            ),
            "API POST, unknown signal": await api_acknowledge(
                client, raised_now(), token, "sae-confirmed"
            ),
        }
    statuses = {what: response.status_code for what, response in answers.items()}
    assert statuses == {
        "old link GET": 303,
        "old link GET, altered": 303,
        "old link GET, no token": 303,
        "old link POST": 410,
        "old link POST, too large": 413,
        "API POST": 201,
        "API POST again": 200,
        "API POST, invalid": 422,
        "API POST, unknown signal": 404,
    }
    for what, response in answers.items():
        assert_locked_down(response, what)

    # the old address leads to the signal's workspace page, the token left behind
    workspace = f"{notifier.url}/workspace/signals/{signal_id}"
    for what in ("old link GET", "old link GET, altered", "old link GET, no token"):
        assert answers[what].headers["location"] == workspace, what
    # the page saying where to go has the one stylesheet the policy allows, and no script
    html = answers["old link POST"].text
    assert workspace in html
    (stylesheet,) = re.findall(r"<style>(.*?)</style>", html, re.S)
    digest = base64.b64encode(hashlib.sha256(stylesheet.encode()).digest()).decode()
    assert policy(answers["old link POST"])["style-src"] == [f"'sha256-{digest}'"]
    assert "<script" not in html
    assert not re.search(r"\s(style|on\w+)=", html)
    assert await acknowledgement_types(notifier_db, envelope) == []


async def test_the_old_link_records_nothing_however_it_is_opened_only_the_api_records(
    notifier: AcknowledgementStack, notifier_db: asyncpg.Pool
) -> None:
    envelope = raised_now()
    await plan(notifier_db, notifier, envelope)
    (token,) = await tokens_sent(notifier, notifier_db, envelope, PI_MAIL)
    signal_id = signal_of(envelope).signal_id
    async with notifier.client() as client:
        for _ in range(3):
            opened = await page(client, envelope, token)
            assert opened.status_code == 303
            assert "token" not in opened.headers["location"]
        # a link crafted to carry an assessment in its address is still only redirected
        crafted = await client.get(
            f"/signals/{signal_id}/acknowledge",
            params={"token": token, "assessment": "not-clinically-significant"},
        )
        assert crafted.status_code == 303
        assert (
            await client.head(f"/signals/{signal_id}/acknowledge?token={token}")
        ).status_code in {303, 405}
        posted = await page_acknowledge(
            client, envelope, {"token": token, "assessment": "clinically-significant"}
        )
        assert posted.status_code == 410
        assert await acknowledgement_types(notifier_db, envelope) == []
        recorded = await api_acknowledge(client, envelope, token, "clinically-significant")
    assert recorded.status_code == 201
    assert await acknowledgement_types(notifier_db, envelope) == ["clinically-significant"]


async def test_bodies_over_the_cap_are_refused_and_record_nothing(
    notifier: AcknowledgementStack, notifier_db: asyncpg.Pool
) -> None:
    envelope = raised_now()
    await plan(notifier_db, notifier, envelope)
    (token,) = await tokens_sent(notifier, notifier_db, envelope, PI_MAIL)
    signal_id = signal_of(envelope).signal_id
    padding = "x" * 200_000
    form = f"token={token}&assessment=clinically-significant&comment={padding}".encode()

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: read until the cap
        for start in range(0, len(form), 8192):
            yield form[start : start + 8192]

    async with notifier.client() as client:
        declared = await client.post(
            f"/signals/{signal_id}/acknowledge",
            content=form,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        streamed = await client.post(
            f"/signals/{signal_id}/acknowledge",
            content=chunks(),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        api = await api_acknowledge(client, envelope, token, "clinically-significant", padding)
        long_comment = await api_acknowledge(
            client, envelope, token, "clinically-significant", "y" * 4001
        )
    assert declared.status_code == 413
    assert streamed.status_code == 413
    assert api.status_code == 413
    assert api.headers["content-type"] == "application/problem+json"
    assert long_comment.status_code == 422  # refused, never cut short
    assert await acknowledgement_types(notifier_db, envelope) == []
