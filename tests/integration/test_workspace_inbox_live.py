"""The inbox and the signal page in a real browser (Debian's Chromium through Playwright,
the workspace served by uvicorn over a real PostgreSQL under the notifier's CSP): a signal
appended to the audit log appears in the inbox without a reload and the live region says
so; the pages fit a phone. Screenshots are saved in the test's output folder."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn
from playwright.async_api import async_playwright, expect

from services.notifier.entrypoints.http_policy import AcknowledgementHttpPolicy
from services.notifier.entrypoints.workspace import inbox
from shared.db.pool import create_pool
from tests.support.browser import launch_chromium
from tests.support.components import as_service_role
from tests.support.notifier import raised, signal_of
from tests.support.waiting import eventually
from tests.support.workspace_inbox import Workspace, opened, signal_url
from vigil.devstack.ports import free_port

pytestmark = [
    pytest.mark.integration,
]


@pytest.fixture
async def served(
    fresh_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Workspace, str]]:
    """The workspace on a real HTTP port with the notifier's security headers (its CSP),
    the inbox asking for updates every second."""
    monkeypatch.setattr(inbox, "POLL_SECONDS", 1)
    pool = await create_pool(as_service_role(fresh_dsn))
    workspace = Workspace(pool)
    workspace.app.add_middleware(AcknowledgementHttpPolicy)  # the notifier's headers and CSP
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(workspace.app, port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:

        async def started() -> bool:
            return bool(server.started)

        await eventually(started, timeout=30, what="the workspace serving")
        yield workspace, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving
        await pool.close()


async def test_a_new_signal_appears_and_is_announced_without_a_reload(
    served: tuple[Workspace, str], tmp_path: Path
) -> None:
    workspace, url = served
    first = raised("S1")
    await workspace.record(first)
    workspace.authenticator.person_id = "pi1"
    async with async_playwright() as playwright:
        browser = await launch_chromium(playwright)
        try:
            page = await browser.new_page(viewport={"width": 390, "height": 844})
            errors: list[str] = []  # console errors (a CSP refusal is one) and failed loads
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on(
                "response",
                lambda r: (
                    errors.append(f"{r.status} {r.url}")
                    if r.status >= 400 and not r.url.endswith("/favicon.ico")
                    else None
                ),
            )
            await page.goto(f"{url}/workspace/inbox")
            await expect(page.locator(f'a[href="{signal_url(first)}"]')).to_be_visible()
            await page.screenshot(path=tmp_path / "inbox-before.png", full_page=True)

            second, elsewhere = raised("S1"), raised("S2")
            await workspace.record(second, elsewhere)

            new_row = page.locator(f'a[href="{signal_url(second)}"]')
            await expect(new_row).to_be_visible(timeout=15_000)
            await expect(page.locator("#inbox-live")).to_have_text("1 new signal")
            await expect(page.locator(".count-open")).to_have_text("2")
            assert await page.locator(f'a[href="{signal_url(elsewhere)}"]').count() == 0
            assert signal_of(elsewhere).subject_id not in await page.content()
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390  # nothing widens the page on a phone
            await page.screenshot(path=tmp_path / "inbox-after.png", full_page=True)
            # the CSP let the script run, and it ran cleanly (the browser's own request
            # for a favicon, which the workspace does not have, is no error of the page)
            assert [e for e in errors if not e.startswith("Failed to load resource")] == []
        finally:
            await browser.close()


async def test_the_signal_page_fits_a_phone_and_runs_under_the_csp(
    served: tuple[Workspace, str], tmp_path: Path
) -> None:
    workspace, url = served
    signal = raised("S1", grade=3, rule_title="A rule with a rather long title to wrap")
    signal = signal.model_copy(update={"id": signal_of(signal).signal_id})
    await workspace.record(signal, opened(signal))
    workspace.authenticator.person_id = "pi1"
    async with async_playwright() as playwright:
        browser = await launch_chromium(playwright)
        try:
            page = await browser.new_page(viewport={"width": 390, "height": 844})
            refused: list[str] = []
            page.on("console", lambda m: refused.append(m.text) if "Refused" in m.text else None)
            await page.goto(f"{url}{signal_url(signal)}")
            await expect(page.get_by_role("link", name="Assess and sign")).to_be_visible()
            await page.keyboard.press("Tab")  # the skip link first: keyboard reachable
            await expect(page.locator(".skip")).to_be_focused()
            assert await page.evaluate("document.documentElement.scrollWidth") <= 390
            await page.screenshot(path=tmp_path / "signal-phone.png", full_page=True)
            assert refused == []  # nothing on the page breaks the CSP
        finally:
            await browser.close()
