"""Steps the workspace flows share, written as a person takes them in the browser."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from playwright.async_api import Page, expect

from tests.e2e.workspace.conftest import Shot
from tests.support.browser import sign_in, wider_than_a_phone
from tests.support.workspace_stack import Person, WorkspaceStack

STUDY = "NCT05262686"


def subject_path(subject_id: str) -> str:
    return f"/workspace/studies/{STUDY}/subjects/{subject_id}"


async def open_signed_in(page: Page, stack: WorkspaceStack, person: Person, path: str) -> None:
    """Open ``path`` as ``person`` would from a bookmark: sent to sign in first, then
    brought back to ``path``."""
    await page.goto(stack.at(path))
    await expect(page).to_have_url(re.compile(r"/workspace/sign-in(\?|$)"))
    await sign_in(page, person.person_id, await stack.password_of(person))
    assert urlsplit(page.url).path == path, page.url


def identical_apart_from(text: str, *ids: str) -> str:
    """The page's text with the ids a person asked for blanked out, to compare the answers
    to two requests that differ only in what they asked for."""
    for value in ids:
        text = text.replace(value, "<id>")
    return text


async def looked_at(page: Page, shot: Shot, name: str) -> None:
    """Screenshots of the page at both sizes (``shot``), and the page fits a phone's width:
    nothing but the boxes meant to scroll makes it scroll sideways."""
    await shot(page, name)
    overflow = await wider_than_a_phone(page)
    assert overflow == [], f"{name} ({page.url}) is wider than a phone: {overflow}"
