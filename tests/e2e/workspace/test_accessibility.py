"""The workspace is accessible and usable on a phone, checked in a real browser.

axe-core (bundled by axe-playwright-python) runs on every page at the desktop and the
phone viewport; no WCAG 2.1 A/AA violation of impact "serious" or "critical" may remain.
axe is injected into the page as a script, which the workspace's Content-Security-Policy
forbids (rightly): the accessibility checks therefore run in a browser context of their own
made with ``bypass_csp=True``. Every other browser test keeps the policy on.

Each page also fits a phone's width (nothing but the boxes meant to scroll scrolls
sideways) and shows no text smaller than 12 px; and a person can go from the inbox to a
signed assessment with the keyboard alone, always seeing where the focus is.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.e2e.workspace.conftest import ACTION_TIMEOUT_MS, Shot
from tests.e2e.workspace.steps import STUDY, open_signed_in, subject_path
from tests.support.browser import DESKTOP, PHONE, LoopbackGuard, wider_than_a_phone
from tests.support.workspace_stack import (
    DATA_MANAGER,
    INVESTIGATOR,
    INVESTIGATOR_SITE_2,
    MEDICAL_MONITOR,
    Person,
    WorkspaceStack,
)
from tests.support.workspace_trial import HYS_LAW, LIVER

pytestmark = [pytest.mark.integration, pytest.mark.browser]

#: the rules of WCAG 2.1 levels A and AA
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
BLOCKING = frozenset({"serious", "critical"})
SMALLEST_TEXT_PX = 12.0
SIGN = re.compile(r"^sign\b(?!\s*out)", re.I)  # the form's button, not "Sign out"

# every element that shows text of its own, with a font size below the limit
_SMALL_TEXT = """(limit) => {
  const found = [];
  for (const element of document.body.querySelectorAll("*")) {
    const own = [...element.childNodes].some(
      node => node.nodeType === Node.TEXT_NODE && node.textContent.trim() !== "");
    if (!own || element.closest("svg")) continue;
    const size = parseFloat(getComputedStyle(element).fontSize);
    const box = element.getBoundingClientRect();
    if (size < limit && box.width > 0 && box.height > 0)
      found.push(`${element.tagName.toLowerCase()} `
                 + `"${element.textContent.trim().slice(0, 30)}": ${size} px`);
  }
  return found;
}"""

# what the focused element draws to show it has the focus
_FOCUS_RING = """() => {
  const s = getComputedStyle(document.activeElement);
  return {tag: document.activeElement.tagName, outline: s.outlineStyle,
          width: parseFloat(s.outlineWidth), shadow: s.boxShadow};
}"""


@dataclass(frozen=True)
class WorkspacePage:
    name: str
    person: Person | None  # None: shown to nobody signed in
    path: str


def pages(stack: WorkspaceStack) -> dict[str, WorkspacePage]:
    signal = stack.signal("01-002", HYS_LAW)
    return {
        page.name: page
        for page in (
            WorkspacePage("sign-in", None, "/workspace/sign-in"),
            WorkspacePage("sign-in-code", None, "/workspace/sign-in/code"),
            WorkspacePage("account", INVESTIGATOR_SITE_2, "/workspace/account"),
            WorkspacePage("inbox", INVESTIGATOR, "/workspace/inbox"),
            WorkspacePage("signal", INVESTIGATOR, f"/workspace/signals/{signal}"),
            WorkspacePage("assess", INVESTIGATOR, f"/workspace/signals/{signal}/assess"),
            WorkspacePage("subject", INVESTIGATOR, subject_path("01-002")),
            WorkspacePage("edish", MEDICAL_MONITOR, f"/workspace/studies/{STUDY}/edish"),
            WorkspacePage("data-quality", DATA_MANAGER, "/workspace/data-quality"),
            WorkspacePage("audit-trail", INVESTIGATOR, subject_path("01-003") + "/audit"),
            WorkspacePage("not-found", INVESTIGATOR, f"/workspace/signals/{uuid.uuid4()}"),
        )
    }


PAGES = [
    "sign-in",
    "sign-in-code",
    "account",
    "inbox",
    "signal",
    "assess",
    "subject",
    "edish",
    "data-quality",
    "audit-trail",
    "not-found",
]


@pytest.fixture
async def axe_context(chromium: Browser, guard: LoopbackGuard) -> AsyncIterator[BrowserContext]:
    """A fresh context like ``context``, but with the page's CSP bypassed: axe-core is a
    script injected into the page, which the workspace's policy refuses. For the
    accessibility checks only."""
    context = await chromium.new_context(viewport=DESKTOP, bypass_csp=True)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    context.on("request", guard.saw)
    await context.route("**/*", guard.route)
    try:
        yield context
    finally:
        await context.close()
    if (problem := guard.problem()) is not None:
        pytest.fail(problem, pytrace=False)


async def open_page(page: Page, stack: WorkspaceStack, shown: WorkspacePage) -> None:
    if shown.person is None:
        await page.goto(stack.at(shown.path))
        assert urlsplit(page.url).path == shown.path, page.url
    else:
        await open_signed_in(page, stack, shown.person, shown.path)
    if shown.name == "account":
        # the second-factor setup with its QR code, the fullest state of the page
        setup = page.get_by_role("button", name=re.compile("set up a second factor", re.I))
        if await setup.count():
            async with page.expect_navigation():
                await setup.click()


def blocking_violations(results: dict[str, object]) -> list[str]:
    """Each serious or critical violation as "id (impact): help — targets"."""
    found = []
    for violation in results["violations"]:  # type: ignore[attr-defined]
        if violation["impact"] not in BLOCKING:
            continue
        targets = [", ".join(node["target"]) for node in violation["nodes"]]
        found.append(
            f"{violation['id']} ({violation['impact']}): {violation['help']} — "
            f"{len(targets)} node(s): {'; '.join(targets[:8])}"
        )
    return found


@pytest.mark.parametrize("name", PAGES)
async def test_each_page_passes_axe_fits_a_phone_and_shows_no_tiny_text(
    workspace: WorkspaceStack, axe_context: BrowserContext, shot: Shot, name: str
) -> None:
    shown = pages(workspace)[name]
    page = await axe_context.new_page()
    await open_page(page, workspace, shown)
    axe = Axe()
    problems: list[str] = []
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        await page.set_viewport_size(size)
        results = await axe.run(page, options={"runOnly": {"type": "tag", "values": WCAG_21_AA}})
        for violation in results.response["violations"]:
            print(
                f"axe {name} {label}: {violation['id']} {violation['impact']} "
                f"{[node['target'] for node in violation['nodes']][:8]} {violation['help']}"
            )
        problems += [f"{label}: {found}" for found in blocking_violations(results.response)]
        small = await page.evaluate(_SMALL_TEXT, SMALLEST_TEXT_PX)
        problems += [f"{label}: text under {SMALLEST_TEXT_PX:g} px: {text}" for text in small]
    await shot(page, name)
    overflow = await wider_than_a_phone(page)
    problems += [f"phone: wider than the screen: {found}" for found in overflow]
    assert problems == [], f"{name} ({shown.path}):\n" + "\n".join(problems)


async def assert_focus_visible(page: Page) -> None:
    ring = await page.evaluate(_FOCUS_RING)
    assert ring["tag"] != "BODY", "the focus was lost"
    assert (ring["outline"] != "none" and ring["width"] > 0) or ring["shadow"] != "none", ring


async def tab_to(page: Page, is_there: object, *, limit: int = 80) -> None:
    """Press Tab until the focused element is ``is_there`` (a locator), checking at every
    stop that the focus can be seen."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        await assert_focus_visible(page)
        if await is_there.evaluate("e => e === document.activeElement"):  # type: ignore[attr-defined]
            return
    raise AssertionError(f"Tab never reached {is_there}")


async def test_an_assessment_is_signed_from_the_inbox_with_the_keyboard_alone(
    workspace: WorkspaceStack, page: Page
) -> None:
    # the ALT signal, not the Hy's law one: test_investigator signs that one as the same
    # person, and one person signs a signal once (the stack is shared by the session)
    signal_id = workspace.signal("01-002", LIVER)
    await open_signed_in(page, workspace, INVESTIGATOR, "/workspace/inbox")

    # the inbox row's link to the ALT signal
    to_signal = page.locator(f'a[href$="/workspace/signals/{signal_id}"]').first
    await tab_to(page, to_signal)
    async with page.expect_navigation():
        await page.keyboard.press("Enter")
    assert urlsplit(page.url).path == f"/workspace/signals/{signal_id}", page.url

    to_assess = page.get_by_role("link", name=re.compile(r"assess", re.I)).first
    await tab_to(page, to_assess)
    async with page.expect_navigation():
        await page.keyboard.press("Enter")
    assert urlsplit(page.url).path == f"/workspace/signals/{signal_id}/assess", page.url

    # the meaning: radio buttons, chosen with the arrow keys and Space
    first_meaning = page.get_by_role("radio").first
    await tab_to(page, first_meaning)
    await page.keyboard.press("Space")
    chosen = page.get_by_role("radio", name="Clinically significant", exact=True)
    for _ in range(6):
        if await chosen.is_checked():
            break
        await page.keyboard.press("ArrowDown")
        await assert_focus_visible(page)
    await expect(chosen).to_be_checked()

    comment = page.get_by_role("textbox", name=re.compile(r"^comment", re.I))
    await tab_to(page, comment)
    await page.keyboard.type("Reviewed with the keyboard alone.")
    password = page.get_by_label(re.compile(r"^password", re.I))
    await tab_to(page, password)
    await page.keyboard.type(await workspace.password_of(INVESTIGATOR))
    sign = page.get_by_role("button", name=SIGN)
    await tab_to(page, sign)
    async with page.expect_navigation():
        await page.keyboard.press("Enter")

    signatures = page.get_by_role("region", name=re.compile("signatures", re.I))
    await expect(signatures).to_contain_text(INVESTIGATOR.name)
    await expect(signatures).to_contain_text("Reviewed with the keyboard alone.")
