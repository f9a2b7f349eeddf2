"""Steps the workspace flows share, written as a person takes them in the browser."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from playwright.async_api import Page, expect

from tests.support.browser import sign_in
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
