"""The first click: the link in a real alert e-mail, sent by a real notifier process
through a real SMTP server, opens the signal in that notifier's workspace (issue 17,
item 1), and the e-mail's times are the site's, to the minute, the zone named."""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest

from tests.e2e.test_haemoglobin_alert import about, enrol, enrolment, new_subject_id
from tests.support.mail import MailCatcher, Received
from tests.support.results import haemoglobin
from tests.support.services import RunningServices
from tests.support.workspace_users import create_workspace_user

pytestmark = pytest.mark.integration

STUDY = "NCT05262686"
LINK = re.compile(r"https?://[^\s\"<>]+/workspace/signals/[0-9a-f-]{36}")
HREF = re.compile(r'href="([^"]+)"')
# what the roster of NCT05262686 says its sites' times are shown in
SITE_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d CST \(Asia/Shanghai\)$")


async def alert_about(
    client: httpx.AsyncClient, db: asyncpg.Connection, mailbox: MailCatcher
) -> Received:
    """A low haemoglobin at site PKUPH-01, reported through ingest: the alert its
    investigator received."""
    subject = new_subject_id()
    await enrol(client, db, enrolment(subject, "PKUPH-01"))
    result: dict[str, Any] = haemoglobin(subject, "7.2")
    response = await client.post("/v1/lab-results", json=result)
    assert response.status_code == 202, response.text
    (mail,) = mailbox.wait_for(
        lambda m: about(subject)(m) and m.envelope_to == ["pi.site01@vigil.example.org"],
        timeout=60,
    )
    return mail


def link_in(mail: Received) -> str:
    """The one link the e-mail carries, the same in its text and its HTML."""
    (text_link,) = set(LINK.findall(mail.body))
    html_part = mail.message.get_body(preferencelist=("html",))
    assert html_part is not None
    assert HREF.findall(str(html_part.get_content())) == [text_link]
    return text_link


async def test_the_link_in_a_real_alert_e_mail_is_the_signal_s_page_on_the_notifier(
    services: RunningServices,
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    mailbox: MailCatcher,
) -> None:
    mail = await alert_about(client, db, mailbox)
    link = link_in(mail)

    # the notifier's own address (not ingest's), the signal's workspace page, no token
    assert link.startswith(f"{services.notifier_url}/workspace/signals/")
    assert not link.startswith(services.ingest_url)
    signal_id = uuid.UUID(link.rsplit("/", 1)[1])
    assert await db.fetchval(
        "SELECT count(*) FROM events WHERE type = 'org.vigil.safety_signal.raised.v1' "
        "AND payload->>'signal_id' = $1",
        str(signal_id),
    )
    assert "token" not in mail.everything.lower()
    async with httpx.AsyncClient(timeout=30) as browser:
        opened = await browser.get(link)
    # answered by the notifier's workspace (its policy allows its own script files; no
    # other service sends that), not a 404 from another port
    assert "script-src 'self'" in opened.headers.get("content-security-policy", "")

    # times as the site reads them: to the minute, in its zone, the zone named
    due = next(line for line in mail.body.splitlines() if line.startswith("Acknowledge by:"))
    assert SITE_TIME.search(due), due
    assert "Deadline" not in mail.body
    required = next(line for line in mail.body.splitlines() if line.startswith("Required action:"))
    assert required.split(":", 1)[1].strip()


async def test_following_the_link_from_a_real_e_mail_signs_in_first_then_opens_the_signal(
    client: httpx.AsyncClient, db: asyncpg.Connection, mailbox: MailCatcher, postgres_dsn: str
) -> None:
    mail = await alert_about(client, db, mailbox)
    link = link_in(mail)
    password = "first click " + uuid.uuid4().hex
    await create_workspace_user(postgres_dsn, "inv-0101", password)
    async with httpx.AsyncClient(timeout=30) as browser:
        opened = await browser.get(link)
        assert opened.status_code == 303, opened.text
        target = urlsplit(opened.headers["location"])
        assert target.path == "/workspace/sign-in"
        assert parse_qs(target.query)["next"] == [urlsplit(link).path]
        sign_in = await browser.get(httpx.URL(link).join(opened.headers["location"]))
        assert sign_in.status_code == 200, sign_in.text
        # the investigator the e-mail was for signs in, and lands on the signal it named
        signed_in = await browser.post(
            httpx.URL(link).join("/workspace/sign-in"),
            data={"name": "inv-0101", "password": password, "next": urlsplit(link).path},
            headers={"sec-fetch-site": "same-origin"},
        )
        assert signed_in.status_code == 303, signed_in.text
        assert signed_in.headers["location"] == urlsplit(link).path
        page = await browser.get(link)
        assert page.status_code == 200, page.text
        subject = re.search(r"subject (\S+):", mail.message["Subject"])
        assert subject is not None
        assert subject.group(1) in page.text
        assert "Assess and sign" in page.text
