"""Scope in a real browser: a URL of another site's subject, signal or audit trail answers
404 with nothing of that site on it, the same answer as for something that does not exist;
eDISH is the study-wide roles'; the data manager has the data-quality queue and no
clinical pages."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.async_api import Page, expect

from tests.e2e.workspace.conftest import Shot
from tests.e2e.workspace.steps import (
    STUDY,
    identical_apart_from,
    looked_at,
    open_signed_in,
    subject_path,
)
from tests.support.workspace_stack import (
    DATA_MANAGER,
    INVESTIGATOR,
    INVESTIGATOR_SITE_2,
    MEDICAL_MONITOR,
    WorkspaceStack,
)
from tests.support.workspace_trial import NEUTROPENIA, SITE_2

pytestmark = [pytest.mark.integration, pytest.mark.browser]


async def status_and_text(page: Page, url: str) -> tuple[int, str]:
    answer = await page.goto(url)
    assert answer is not None
    return answer.status, await page.locator("body").inner_text()


async def test_another_sites_subject_signal_and_audit_trail_answer_404_like_nothing_there(
    workspace: WorkspaceStack, page: Page, shot: Shot
) -> None:
    other_signal = workspace.signal("02-001", NEUTROPENIA)
    unknown_signal = uuid.uuid4()
    await open_signed_in(page, workspace, INVESTIGATOR, "/workspace/inbox")
    pairs = [
        (subject_path("02-001"), subject_path("02-999"), "02-001", "02-999"),
        (
            f"/workspace/signals/{other_signal}",
            f"/workspace/signals/{unknown_signal}",
            str(other_signal),
            str(unknown_signal),
        ),
        (
            f"/workspace/signals/{other_signal}/assess",
            f"/workspace/signals/{unknown_signal}/assess",
            str(other_signal),
            str(unknown_signal),
        ),
        (subject_path("02-001") + "/audit", subject_path("02-999") + "/audit", "02-001", "02-999"),
    ]
    for denied, absent, denied_id, absent_id in pairs:
        denied_status, denied_text = await status_and_text(page, workspace.at(denied))
        assert denied_status == 404, denied
        for leak in (SITE_2, "Site 02", "neutrophil", "1.2"):
            assert leak not in denied_text, (denied, leak)
        if denied.endswith("/audit"):
            await shot(page, "denied-audit-trail")
        absent_status, absent_text = await status_and_text(page, workspace.at(absent))
        assert absent_status == 404, absent
        assert identical_apart_from(denied_text, denied_id) == identical_apart_from(
            absent_text, absent_id
        )
    await page.goto(workspace.at(subject_path("02-001")))
    await shot(page, "denied-subject")

    # the same URL shows the subject to someone whose scope it is in
    await page.context.clear_cookies()
    await open_signed_in(page, workspace, MEDICAL_MONITOR, subject_path("02-001"))
    await expect(page.get_by_role("heading", level=1)).to_contain_text("02-001")


async def test_edish_is_not_an_investigators_page(workspace: WorkspaceStack, page: Page) -> None:
    await open_signed_in(page, workspace, INVESTIGATOR, "/workspace/inbox")
    status, text = await status_and_text(page, workspace.at(f"/workspace/studies/{STUDY}/edish"))
    assert status == 404
    assert "02-001" not in text


async def test_the_data_manager_reviews_the_data_quality_queue_and_sees_no_clinical_page(
    workspace: WorkspaceStack, page: Page, shot: Shot
) -> None:
    await open_signed_in(page, workspace, DATA_MANAGER, "/workspace/data-quality")
    queue = page.get_by_role("table").first
    await expect(queue).to_contain_text(re.compile(r"unit[- ]not[- ]convertible", re.I))
    await expect(queue).to_contain_text("01-004")
    await expect(queue).to_contain_text(re.compile(r"unknown[- ]subject", re.I))
    await expect(queue).to_contain_text("01-099")
    await looked_at(page, shot, "data-quality")

    row = queue.get_by_role("row").filter(has_text="01-004")
    await row.get_by_label(re.compile("note", re.I)).fill("Lab asked to resend in U/L.")
    async with page.expect_navigation():
        await row.get_by_role("button", name=re.compile("reviewed", re.I)).click()
    await looked_at(page, shot, "data-quality-reviewed")
    reviewed = await workspace.events(
        "type = 'org.vigil.data_quality.issue_reviewed.v1' AND subject_id = $1", "01-004"
    )
    assert len(reviewed) == 1
    assert reviewed[0]["payload"]["person_id"] == DATA_MANAGER.person_id
    assert reviewed[0]["payload"]["note"] == "Lab asked to resend in U/L."

    status, _ = await status_and_text(page, workspace.at(subject_path("01-004")))
    assert status == 404
    _, inbox = await status_and_text(page, workspace.at("/workspace/inbox"))
    assert "01-002" not in inbox


async def test_each_sites_investigator_sees_only_their_sites_signals(
    workspace: WorkspaceStack, page: Page
) -> None:
    await open_signed_in(page, workspace, INVESTIGATOR_SITE_2, "/workspace/inbox")
    await expect(page.get_by_role("link", name="02-001", exact=True).first).to_be_visible()
    await expect(page.get_by_role("link", name="02-002", exact=True).first).to_be_visible()
    for other in ("01-001", "01-002", "01-003"):
        await expect(page.get_by_role("link", name=other, exact=True)).to_have_count(0)
