"""Fixtures of the workspace's browser tests: Debian's Chromium (one per session), a fresh
browser context per test whose requests never leave loopback, the seeded workspace stack
(one per session), and screenshots under ``test-output/workspace/<test name>/``."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, Playwright, async_playwright

from tests.support import browser
from tests.support.browser import DESKTOP, ChromiumMissing, LoopbackGuard, launch_chromium
from tests.support.workspace_stack import WorkspaceStack, workspace_stack

# a page that needs longer than this to show an element is broken, not slow
ACTION_TIMEOUT_MS = 15_000

Shot = Callable[[Page, str], Awaitable[list[Path]]]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "browser: drives Debian's Chromium through the workspace (Playwright)"
    )


@pytest.fixture(scope="session")
async def playwright_driver() -> AsyncIterator[Playwright]:
    async with async_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
async def chromium(playwright_driver: Playwright) -> AsyncIterator[Browser]:
    """Debian's Chromium, headless; the test FAILS (never skips) when it is not installed."""
    try:
        launched = await launch_chromium(playwright_driver)
    except ChromiumMissing as missing:
        pytest.fail(str(missing), pytrace=False)
    try:
        yield launched
    finally:
        await launched.close()


@pytest.fixture(scope="session")
async def workspace(
    postgres_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[WorkspaceStack]:
    """ingest, rules and the notifier's app on a database of their own, with the trial of
    tests/support/workspace_trial.py through the real pipeline."""
    async with workspace_stack(postgres_dsn, tmp_path_factory.mktemp("workspace-stack")) as stack:
        print(f"workspace stack at {stack.url}, seeded in {stack.ready_seconds:.1f} s")
        yield stack


@pytest.fixture
def guard() -> LoopbackGuard:
    return LoopbackGuard()


@pytest.fixture
async def context(chromium: Browser, guard: LoopbackGuard) -> AsyncIterator[BrowserContext]:
    """A fresh context (no cookies, desktop viewport); the test fails if any of its pages
    tried to reach a host other than loopback."""
    context = await chromium.new_context(viewport=DESKTOP)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    context.on("request", guard.saw)
    await context.route("**/*", guard.route)
    try:
        yield context
    finally:
        await context.close()
    if (problem := guard.problem()) is not None:
        pytest.fail(problem, pytrace=False)


@pytest.fixture
async def page(context: BrowserContext) -> Page:
    return await context.new_page()


@pytest.fixture
def shot_folder(request: pytest.FixtureRequest) -> Path:
    """The test's own screenshot folder, emptied of an earlier run's."""
    folder = browser.output_folder(request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    print(f"screenshots: {folder}")
    return folder


@pytest.fixture
def shot(shot_folder: Path) -> Shot:
    """``await shot(page, "inbox")``: desktop and phone full-page PNGs of what the page
    shows, in the test's folder."""

    async def take(page: Page, name: str) -> list[Path]:
        return await browser.shot(page, name, shot_folder)

    return take
