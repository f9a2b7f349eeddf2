"""The browser harness itself: Debian's Chromium, headless and quiet, never reaching past
loopback, and screenshots at both viewports. Needs no workspace page."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page

from tests.e2e.workspace.conftest import Shot
from tests.support.browser import (
    DESKTOP,
    LOOPBACK_ONLY,
    PHONE,
    QUIET,
    ChromiumMissing,
    LoopbackGuard,
    chromium_executable,
    launch_arguments,
    stays_on_loopback,
    wider_than_a_phone,
)

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


async def test_the_browser_is_debians_chromium_running_headless(
    chromium: Browser, page: Page
) -> None:
    version = await asyncio.create_subprocess_exec(
        chromium_executable(), "--version", stdout=asyncio.subprocess.PIPE
    )
    installed = (await version.communicate())[0].decode()
    assert chromium.version in installed, (chromium.version, installed)
    assert "HeadlessChrome" in await page.evaluate("navigator.userAgent")


def test_chromium_is_told_to_stay_quiet_and_sandboxed_unless_root() -> None:
    as_root = launch_arguments(as_root=True)
    as_user = launch_arguments(as_root=False)
    for switch in (*QUIET, LOOPBACK_ONLY):
        assert switch in as_root
        assert switch in as_user
    assert "--no-sandbox" in as_root
    assert "--no-sandbox" not in as_user


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8082/workspace/inbox", True),
        ("http://localhost:8082/workspace/static/workspace.css", True),
        ("http://[::1]:8082/", True),
        ("data:image/png;base64,iVBORw0KGgo=", True),
        ("about:blank", True),
        ("https://cdn.jsdelivr.net/npm/htmx.org", False),
        ("http://10.0.0.7/", False),
        ("http://127.0.0.1.nip.io/", False),
        ("ws://example.org/live", False),
    ],
)
def test_only_loopback_and_inline_urls_count_as_staying_local(url: str, local: bool) -> None:
    assert stays_on_loopback(url) is local


async def test_a_request_to_another_host_is_blocked_and_reported(chromium: Browser) -> None:
    guard = LoopbackGuard()
    context = await chromium.new_context()
    try:
        context.on("request", guard.saw)
        await context.route("**/*", guard.route)
        page = await context.new_page()
        await page.set_content(
            '<img id="remote" alt="remote" src="http://93.184.215.14/pixel.png">'
            '<img id="named" alt="named" src="https://cdn.example.org/pixel.png">'
        )
        await page.wait_for_load_state("networkidle")
        loaded = await page.evaluate(
            "[...document.images].map(image => image.complete && image.naturalWidth > 0)"
        )
    finally:
        await context.close()
    assert loaded == [False, False]
    assert sorted(guard.left_loopback) == [
        "http://93.184.215.14/pixel.png",
        "https://cdn.example.org/pixel.png",
    ]
    problem = guard.problem()
    assert problem is not None
    assert "2 request(s) tried to leave 127.0.0.1" in problem


async def test_shot_saves_full_page_pngs_at_the_desktop_and_phone_viewports(
    page: Page, shot: Shot, shot_folder: Path
) -> None:
    await page.set_content(
        '<main><h1>Tall page</h1><svg width="300" height="2400" role="img" aria-label="bar">'
        '<rect width="300" height="2400" fill="#3a6"/></svg></main>'
    )
    saved = await shot(page, "tall")
    assert saved == [shot_folder / "tall-desktop.png", shot_folder / "tall-phone.png"]
    desktop, phone = (png_size(path) for path in saved)
    assert desktop[0] == DESKTOP["width"]
    assert desktop[1] > 2400
    assert phone[0] == PHONE["width"]
    assert phone[1] > 2400
    assert page.viewport_size == DESKTOP  # restored for the rest of the test
    assert shot_folder.parts[-3:] == (
        "test-output",
        "workspace",
        "test_shot_saves_full_page_pngs_at_the_desktop_and_phone_viewports",
    )


def test_a_machine_without_chromium_fails_the_browser_tests_saying_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ChromiumMissing, match="apt-get install chromium"):
        chromium_executable()


async def test_a_page_wider_than_a_phone_is_told_apart_from_one_that_scrolls_a_table(
    page: Page,
) -> None:
    await page.set_content(
        '<main><div class="table-scroll" style="overflow-x: auto">'
        '<table><tr><td style="min-width: 900px">wide table</td></tr></table></div>'
        '<select id="rule" style="width: 450px"><option>All rules</option></select></main>'
    )
    assert await wider_than_a_phone(page) == [
        "main > select#rule: 68 px too wide"
    ]  # 8 px body margin + 450 - 390
    await page.set_content(
        '<main><div style="overflow-x: auto"><table><tr><td style="min-width: 900px">'
        "wide table</td></tr></table></div><p>short</p></main>"
    )
    assert await wider_than_a_phone(page) == []
    assert page.viewport_size == DESKTOP
