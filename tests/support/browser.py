"""A real browser for the workspace's tests: Debian's Chromium driven by Playwright.

Playwright downloads nothing here: it is given the executable Debian's ``chromium`` package
puts on PATH (``make test`` installs the package when missing, scripts/ensure-system-packages).
Each launch gets a fresh, temporary user-data directory (Playwright's ``launch`` makes one
and deletes it on close), runs headless, and is told not to phone home; on top of that,
every request a page makes to a host other than loopback is aborted and recorded, so a test
can assert that nothing left 127.0.0.1 while its pages loaded.

Screenshots: :func:`shot` saves full-page PNGs at a desktop and a phone viewport under
``test-output/workspace/<test name>/`` at the repository's root (gitignored).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from playwright.async_api import Browser, Page, Playwright, Request, Route

REPO = Path(__file__).resolve().parents[2]
OUTPUT = REPO / "test-output" / "workspace"

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

#: what keeps a headless Chromium quiet: no background fetches (safe browsing, variations,
#: translate), no component updates, no sync, no first-run pages, no GPU process, no QUIC
QUIET = (
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-gpu",
    "--disable-quic",
)
#: no name but localhost resolves: a request the page guard could not see (the browser's
#: own) still cannot find a host beyond this machine
LOOPBACK_ONLY = "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# schemes that never reach a network: inline data, blobs, the browser's own pages
LOCAL_SCHEMES = frozenset({"data", "blob", "about", "chrome", "chrome-error", "devtools"})


class ChromiumMissing(AssertionError):
    """No ``chromium`` on PATH: the browser tests cannot run, and must not pass silently."""


def chromium_executable() -> str:
    """The path of Debian's ``chromium``; fails, saying how to install it, when missing."""
    found = shutil.which("chromium")
    if found is None:
        raise ChromiumMissing(
            "the browser tests need Debian's chromium on PATH: run `make test` (it installs "
            "it through scripts/ensure-system-packages) or `apt-get install chromium`"
        )
    return found


def running_as_root() -> bool:
    return os.geteuid() == 0


def launch_arguments(*, as_root: bool) -> list[str]:
    """Chromium's command-line switches: the quiet ones, loopback-only name resolution,
    and ``--no-sandbox`` when root (Chromium refuses to start its sandbox as root)."""
    return [*QUIET, LOOPBACK_ONLY, *(["--no-sandbox"] if as_root else [])]


async def launch_chromium(playwright: Playwright) -> Browser:
    """Headless Debian Chromium with a fresh temporary profile, sandboxed unless root."""
    as_root = running_as_root()
    return await playwright.chromium.launch(
        executable_path=chromium_executable(),
        headless=True,
        args=launch_arguments(as_root=as_root),
        # Playwright's default (False) would add --no-sandbox for everyone
        chromium_sandbox=not as_root,
    )


def stays_on_loopback(url: str) -> bool:
    """Whether fetching ``url`` stays on this machine: a loopback host, or no network."""
    parts = urlsplit(url)
    if parts.scheme in LOCAL_SCHEMES:
        return True
    return parts.hostname in LOOPBACK_HOSTS


@dataclass
class LoopbackGuard:
    """Watches a browser context: every request is recorded, and any that would leave
    loopback is aborted before it is sent."""

    requested: list[str] = field(default_factory=list)
    left_loopback: list[str] = field(default_factory=list)

    def saw(self, request: Request) -> None:
        """``context.on("request", guard.saw)``: every request any page made."""
        self.requested.append(request.url)
        if not stays_on_loopback(request.url):
            self.left_loopback.append(request.url)

    async def route(self, route: Route) -> None:
        """``context.route("**/*", guard.route)``: stops what would leave loopback."""
        if stays_on_loopback(route.request.url):
            await route.continue_()
        else:
            await route.abort("blockedbyclient")

    def problem(self) -> str | None:
        """What left (or tried to leave) loopback, in words; None when nothing did."""
        if not self.left_loopback:
            return None
        return (
            f"{len(self.left_loopback)} request(s) tried to leave 127.0.0.1 (blocked): "
            + ", ".join(sorted(set(self.left_loopback))[:10])
        )


def output_folder(test_name: str) -> Path:
    """``test-output/workspace/<test name>/`` (parameters made file-name safe)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", test_name).strip("-")
    return OUTPUT / safe


async def shot(page: Page, name: str, folder: Path) -> list[Path]:
    """Full-page PNGs of what ``page`` shows now, at the desktop and the phone viewport:
    ``<folder>/<name>-desktop.png`` and ``<folder>/<name>-phone.png``. The page's own
    viewport is restored afterwards."""
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    before = page.viewport_size
    saved = []
    try:
        for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
            await page.set_viewport_size(size)
            path = folder / f"{name}-{label}.png"
            await page.screenshot(path=str(path), full_page=True)
            saved.append(path)
    finally:
        if before is not None:
            await page.set_viewport_size(before)
    return saved


# what sticks out past the right edge of the window, outside any scrolling box: each as
# "tag#id.class: N px too wide", the outermost first
_OVERFLOWING = """() => {
  const width = document.documentElement.clientWidth;
  const scrolls = element => {
    for (let up = element.parentElement; up; up = up.parentElement) {
      const overflow = getComputedStyle(up).overflowX;
      if (up !== document.body && up !== document.documentElement
          && ["auto", "scroll", "hidden", "clip"].includes(overflow)) return true;
    }
    return false;
  };
  const one = element => element.tagName.toLowerCase() + (element.id ? "#" + element.id : "")
    + [...element.classList].map(c => "." + c).join("");
  // up to the nearest ancestor with an id or a class, so an anonymous div is findable
  const describe = element => {
    const path = [one(element)];
    for (let up = element.parentElement; up && up !== document.body; up = up.parentElement) {
      path.unshift(one(up));
      if (up.id || up.classList.length) break;
    }
    return path.join(" > ");
  };
  const found = [];
  for (const element of document.body.querySelectorAll("*")) {
    const right = element.getBoundingClientRect().right;
    if (right <= width + 1 || scrolls(element)) continue;
    if (found.some(outer => outer.element.contains(element))) continue;
    found.push({element, text: `${describe(element)}: ${Math.ceil(right - width)} px too wide`});
  }
  return found.map(item => item.text);
}"""


async def wider_than_a_phone(page: Page) -> list[str]:
    """What makes the page scroll sideways at the phone viewport (390 px), outside the
    boxes meant to scroll (``.table-scroll``); empty when it fits. The page's own viewport
    is restored afterwards."""
    before = page.viewport_size
    try:
        await page.set_viewport_size(PHONE)
        found: list[str] = await page.evaluate(_OVERFLOWING)
    finally:
        if before is not None:
            await page.set_viewport_size(before)
    return found


# -- steps through the workspace, by accessible role and label --------------------------------

SIGN_IN_NAME = re.compile(r"sign-in name|user ?name|person id|e-?mail", re.IGNORECASE)
PASSWORD = re.compile(r"^password", re.IGNORECASE)
SIGN_IN_BUTTON = re.compile(r"^sign in", re.IGNORECASE)


async def sign_in(page: Page, person_id: str, password: str) -> None:
    """Fill the sign-in form the page shows now (after a redirect to it, or opened at
    ``/workspace/sign-in``) and send it; returns once the next page has loaded."""
    await page.get_by_label(SIGN_IN_NAME).first.fill(person_id)
    await page.get_by_label(PASSWORD).fill(password)
    async with page.expect_navigation():
        await page.get_by_role("button", name=SIGN_IN_BUTTON).click()
