"""An investigator's day in the workspace, in a real browser: sign in, the inbox of their
own site, a subject's charts, and a signed assessment of a potential Hy's law case; and the
link in their alert e-mail leading to the signal after sign-in."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Page, expect

from shared.events.notifications import notification_stream
from shared.eventstore.export import read_export, row_hash_matches
from tests.e2e.workspace.conftest import Shot
from tests.e2e.workspace.steps import STUDY, looked_at, open_signed_in, subject_path
from tests.support.browser import PASSWORD, sign_in
from tests.support.workspace_stack import INVESTIGATOR, WorkspaceStack
from tests.support.workspace_trial import HYS_LAW, LIVER, SITE_2

pytestmark = [pytest.mark.integration, pytest.mark.browser]
SIGNED = "org.vigil.notification.assessment_signed.v1"
LINK = re.compile(r"https?://\S+")
SIGN = re.compile(r"^sign\b(?!\s*out)", re.I)  # the form's button, not "Sign out"


async def test_an_investigator_signs_in_reviews_a_subject_and_signs_an_assessment(
    workspace: WorkspaceStack, page: Page, shot: Shot
) -> None:
    # the inbox: their site's open signals, nothing of site 02
    await open_signed_in(page, workspace, INVESTIGATOR, "/workspace/inbox")
    await expect(page.get_by_role("heading", level=1)).to_contain_text(re.compile("inbox", re.I))
    await expect(page.get_by_role("link", name="01-002", exact=True).first).to_be_visible()
    await expect(page.get_by_role("link", name="02-001", exact=True)).to_have_count(0)
    assert SITE_2 not in await page.content()
    await looked_at(page, shot, "inbox")

    # the subject's charts: one per analyte, each with a table of the same results
    await page.get_by_role("link", name="01-002", exact=True).first.click()
    await expect(page).to_have_url(workspace.at(subject_path("01-002")))
    await expect(page.get_by_role("heading", level=1)).to_contain_text("01-002")
    assert await page.locator("svg").count() >= 2  # ALT and bilirubin at least
    await expect(page.get_by_role("table").filter(has_text="ALT").first).to_be_visible()
    await looked_at(page, shot, "subject")

    # the Hy's law signal and its assessment
    signal_id = workspace.signal("01-002", HYS_LAW)
    await page.goto(workspace.at(f"/workspace/signals/{signal_id}"))
    await expect(page.get_by_text(re.compile(r"Hy's law", re.I)).first).to_be_visible()
    await looked_at(page, shot, "signal")
    await page.get_by_role("link", name=re.compile(r"assess", re.I)).first.click()
    await expect(page).to_have_url(workspace.at(f"/workspace/signals/{signal_id}/assess"))
    await page.get_by_role("radio", name="Clinically significant", exact=True).check()
    await page.get_by_role("textbox", name=re.compile(r"^comment", re.I)).fill(
        "Repeat LFTs and INR in 48 h."
    )

    # a wrong password signs nothing, and the page says which field to look at
    await page.get_by_label(PASSWORD).fill("not-my-password-at-all")
    await page.get_by_role("button", name=SIGN).click()
    await expect(page.get_by_role("alert")).to_contain_text(re.compile("password", re.I))
    await shot(page, "assessment-refused")
    stream = notification_stream(signal_id)
    assert await workspace.events("type = $1 AND stream_id = $2", SIGNED, stream) == []

    await page.get_by_role("radio", name="Clinically significant", exact=True).check()
    await page.get_by_label(PASSWORD).fill(await workspace.password_of(INVESTIGATOR))
    await looked_at(page, shot, "assessment-form")
    await page.get_by_role("button", name=SIGN).click()
    # the manifestation (21 CFR 11.50): printed name, date and time, meaning
    signatures = page.get_by_role("region", name=re.compile("signatures", re.I))
    await expect(signatures).to_contain_text(INVESTIGATOR.name)
    await expect(signatures.get_by_text("Clinically significant", exact=True)).to_be_visible()
    await expect(signatures).to_contain_text(re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} \w+"))
    await looked_at(page, shot, "assessment-signed")

    (signed,) = await workspace.events("type = $1 AND stream_id = $2", SIGNED, stream)
    assert signed["payload"]["person_id"] == INVESTIGATOR.person_id
    assert signed["payload"]["meaning"] == "clinically-significant"
    assert signed["payload"]["comment"] == "Repeat LFTs and INR in 48 h."


async def test_the_link_in_an_alert_email_opens_the_signal_after_sign_in(
    workspace: WorkspaceStack, page: Page, shot: Shot
) -> None:
    signal_id = str(workspace.signal("01-002", LIVER))
    mails = await asyncio.to_thread(
        workspace.mailbox.wait_for,
        lambda m: m.envelope_to == ["pi.site01@vigil.example.org"] and signal_id in m.body,
        timeout=60,
    )
    (link,) = {link for link in LINK.findall(mails[0].body) if signal_id in link}
    await page.goto(link)
    await expect(page).to_have_url(re.compile(r"/workspace/sign-in\?"))
    await shot(page, "sign-in-from-email")
    await sign_in(page, INVESTIGATOR.person_id, await workspace.password_of(INVESTIGATOR))
    assert urlsplit(page.url).path in {
        f"/workspace/signals/{signal_id}",
        f"/workspace/signals/{signal_id}/assess",
    }, page.url
    await expect(page.get_by_text("01-002").first).to_be_visible()
    await shot(page, "signal-from-email")


async def test_an_investigator_reads_and_exports_a_corrected_subjects_audit_trail(
    workspace: WorkspaceStack, page: Page, shot: Shot
) -> None:
    path = subject_path("01-003") + "/audit"
    await open_signed_in(page, workspace, INVESTIGATOR, path)
    trail = page.get_by_role("table").first
    await expect(trail).to_contain_text(re.compile("superseded|corrected", re.I))
    await expect(trail).to_contain_text(re.compile("amended", re.I))
    await looked_at(page, shot, "audit-trail")
    async with page.expect_download() as downloading:
        await page.get_by_role("link", name=re.compile(r"export|JSON lines", re.I)).first.click()
    download = await downloading.value
    saved = await download.path()
    text = await asyncio.to_thread(saved.read_text, encoding="utf-8")
    kind = "csv" if download.suggested_filename.endswith(".csv") else "jsonl"
    records = read_export(text.splitlines(), kind)
    stored = await workspace.events("study_id = $1 AND subject_id = $2", STUDY, "01-003")
    assert {int(record["position"]) for record in records} >= {row["position"] for row in stored}
    assert all(row_hash_matches(record) for record in records)
