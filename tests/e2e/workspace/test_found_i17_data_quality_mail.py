"""Found by the outside tester (i17): the link in a data-quality e-mail is a dead end.

The seeded trial's 01-004 ALT in a unit Vigil cannot convert is a data-quality issue, and
the medical monitor is e-mailed about it ("[Vigil] UNKNOWN UNIT: NCT05262686 subject
01-004"). The message says "Open the signal in the Vigil workspace to assess and sign (you
sign in first)" and links to ``/workspace/signals/<issue id>``; but a data-quality issue is
not a signal, and that page answers 404 ("Not found") to the very person the e-mail was
sent to, after they signed in. The same holds for the unknown-subject issue (01-099).

Expected: "E-mailed alert links lead to the signal page": every workspace link in an alert
e-mail, followed by its recipient after signing in, answers 200 with a page that shows
what the e-mail is about (here the issue in the data-quality queue, or its subject), never
a 404.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from playwright.async_api import Page

from tests.support.browser import sign_in
from tests.support.workspace_stack import MEDICAL_MONITOR, WorkspaceStack

pytestmark = [pytest.mark.integration, pytest.mark.browser]

LINK = re.compile(r"https?://[^\s<>\"]+/workspace/[^\s<>\"]*")


async def test_the_workspace_link_in_a_data_quality_email_opens_for_its_recipient(
    workspace: WorkspaceStack, page: Page
) -> None:
    mails = await asyncio.to_thread(
        workspace.mailbox.wait_for,
        lambda m: (
            m.envelope_to == ["medical.monitor@vigil.example.org"]
            and "01-004" in str(m.message["Subject"])
        ),
        timeout=60,
    )
    body = mails[0].everything
    links = sorted(set(LINK.findall(body)))
    assert links, f"no workspace link in the medical monitor's data-quality e-mail:\n{body}"
    await page.goto(links[0])
    if "/workspace/sign-in" in page.url:
        await sign_in(page, MEDICAL_MONITOR.person_id, await workspace.password_of(MEDICAL_MONITOR))
    for link in links:
        answer = await page.goto(link)
        assert answer is not None
        text = await page.locator("body").inner_text()
        assert answer.status == 200, (
            f"{link} from the data-quality e-mail answered {answer.status} to its recipient: "
            f"{text[:200]}"
        )
        assert "01-004" in text, link
