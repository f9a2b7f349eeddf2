"""The medical monitor in a real browser: the whole study's inbox, the eDISH plot with the
Hy's law case highlighted, and from a point of it to the subject."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from tests.e2e.workspace.conftest import Shot
from tests.e2e.workspace.steps import STUDY, looked_at, open_signed_in, subject_path
from tests.support.workspace_stack import MEDICAL_MONITOR, WorkspaceStack

pytestmark = [pytest.mark.integration, pytest.mark.browser]


async def test_the_medical_monitor_goes_from_the_inbox_to_edish_to_the_subject(
    workspace: WorkspaceStack, page: Page, shot: Shot
) -> None:
    await open_signed_in(page, workspace, MEDICAL_MONITOR, "/workspace/inbox")
    # both sites' signals
    await expect(page.get_by_role("link", name="01-002", exact=True).first).to_be_visible()
    await expect(page.get_by_role("link", name="02-001", exact=True).first).to_be_visible()
    await looked_at(page, shot, "inbox")

    await page.goto(workspace.at(f"/workspace/studies/{STUDY}/edish"))
    await expect(page.get_by_role("heading", level=1)).to_contain_text(re.compile("eDISH", re.I))
    # the plot, with its quadrants labelled, and a table of the same points
    assert await page.locator("svg").count() >= 1
    await expect(page.get_by_text(re.compile(r"Hy's law", re.I)).first).to_be_visible()
    points = page.get_by_role("table").filter(has_text="01-002").first
    await expect(points).to_be_visible()
    await expect(points).to_contain_text("02-002")  # a normal subject is a point too
    await looked_at(page, shot, "edish")

    await points.get_by_role("link", name="01-002", exact=True).first.click()
    await expect(page).to_have_url(workspace.at(subject_path("01-002")))
    await expect(page.get_by_role("heading", level=1)).to_contain_text("01-002")
    await looked_at(page, shot, "subject")


async def test_each_point_of_the_edish_plot_links_to_its_subject(
    workspace: WorkspaceStack, page: Page
) -> None:
    await open_signed_in(page, workspace, MEDICAL_MONITOR, f"/workspace/studies/{STUDY}/edish")
    targets = await page.locator("svg a").evaluate_all(
        "links => links.map(a => a.getAttribute('href') || a.getAttribute('xlink:href'))"
    )
    assert subject_path("01-002") in {re.sub(r"^https?://[^/]+", "", t or "") for t in targets}
