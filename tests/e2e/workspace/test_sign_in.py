"""Signing in to the workspace in a real browser: the page, the way to it from a page that
needs a session, a wrong password, and signing out."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import Page, expect

from tests.e2e.workspace.conftest import Shot
from tests.e2e.workspace.steps import looked_at, open_signed_in
from tests.support.browser import PASSWORD, SIGN_IN_BUTTON, SIGN_IN_NAME, LoopbackGuard, sign_in
from tests.support.workspace_stack import INVESTIGATOR, WorkspaceStack

pytestmark = [pytest.mark.integration, pytest.mark.browser]


async def test_the_sign_in_page_renders_with_labelled_fields(
    workspace: WorkspaceStack, page: Page, guard: LoopbackGuard, shot: Shot
) -> None:
    answer = await page.goto(workspace.at("/workspace/sign-in"))
    assert answer is not None
    assert answer.status == 200
    await expect(page.get_by_label(SIGN_IN_NAME).first).to_be_editable()
    await expect(page.get_by_label(PASSWORD)).to_have_attribute("type", "password")
    await expect(page.get_by_role("button", name=SIGN_IN_BUTTON)).to_be_enabled()
    await looked_at(page, shot, "sign-in")
    assert guard.requested  # the page and its stylesheet, all from this server
    assert guard.left_loopback == []


async def test_an_unauthenticated_inbox_request_lands_on_sign_in(
    workspace: WorkspaceStack, page: Page, shot: Shot
) -> None:
    answer = await page.goto(workspace.at("/workspace/inbox"))
    assert answer is not None
    assert answer.status == 200
    landed = urlsplit(page.url)
    assert landed.path == "/workspace/sign-in"
    assert parse_qs(landed.query)["next"] == ["/workspace/inbox"]
    await expect(page.get_by_role("button", name=SIGN_IN_BUTTON)).to_be_visible()
    await expect(page.get_by_role("table")).to_have_count(0)  # no inbox rows before sign-in
    await shot(page, "sent-to-sign-in")


async def test_a_wrong_password_is_refused_without_saying_which_part_was_wrong(
    workspace: WorkspaceStack, page: Page, shot: Shot
) -> None:
    await page.goto(workspace.at("/workspace/sign-in"))
    await workspace.password_of(INVESTIGATOR)
    await sign_in(page, INVESTIGATOR.person_id, "not-the-password-at-all")
    alert = page.get_by_role("alert")
    await expect(alert).to_be_visible()
    wrong_password = await alert.inner_text()
    await shot(page, "refused")
    await sign_in(page, "nobody-on-the-roster", "not-the-password-at-all")
    await expect(page.get_by_role("alert")).to_have_text(wrong_password)
    assert "not-the-password-at-all" not in await page.content()
    assert urlsplit(page.url).path == "/workspace/sign-in"


async def test_signing_out_ends_the_session(
    workspace: WorkspaceStack, page: Page, shot: Shot
) -> None:
    await open_signed_in(page, workspace, INVESTIGATOR, "/workspace/inbox")
    await page.get_by_role("button", name=re.compile(r"^sign out", re.IGNORECASE)).click()
    await expect(page).to_have_url(re.compile(r"/workspace/sign-in"))
    await shot(page, "signed-out")
    await page.goto(workspace.at("/workspace/inbox"))
    await expect(page).to_have_url(re.compile(r"/workspace/sign-in"))


async def test_signing_in_takes_the_keyboard_alone_with_the_focus_visible(
    workspace: WorkspaceStack, page: Page
) -> None:
    password = await workspace.password_of(INVESTIGATOR)
    await page.goto(workspace.at("/workspace/inbox"))
    name = page.get_by_label(SIGN_IN_NAME).first
    await name.focus()
    await page.keyboard.type(INVESTIGATOR.person_id)
    await page.keyboard.press("Tab")
    await expect(page.get_by_label(PASSWORD)).to_be_focused()
    outline = await page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, s.outlineWidth, s.boxShadow]; }"
    )
    assert outline[0] != "none" or outline[2] != "none", outline  # a visible focus ring
    await page.keyboard.type(password)
    async with page.expect_navigation():
        await page.keyboard.press("Enter")
    assert urlsplit(page.url).path == "/workspace/inbox", page.url
