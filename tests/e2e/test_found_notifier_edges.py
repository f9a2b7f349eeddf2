"""The notifier's edges, found by an outside review: one acknowledgement token records one
assessment however it is spelt; a webhook that never finishes its answer holds up no
e-mail; a result's unit as sent (free text) reaches no e-mail and no derived event.

Every test goes through the real interfaces (ingest's HTTP API, the broker, the notifier's
acknowledgement API, SMTP, a webhook receiver) and reads the database as the schema owner
only to see what was kept.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from services.notifier.domain.links import LinkClaims, LinkIssuer, LinkKeyRing, parse_link_keys
from shared.analytes import UNIT_NOT_RECOGNISED
from tests.support.mail import MailCatcher, Received
from tests.support.private_stack import private_stack
from tests.support.results import haemoglobin, new_subject_id
from tests.support.services import RunningServices
from tests.support.waiting import eventually
from tests.support.webhook import trickling_receiver

pytestmark = pytest.mark.integration

STUDY = "NCT05262686"
ACKNOWLEDGED = "org.vigil.notification.acknowledged.v1"
_LINK = re.compile(r"/workspace/signals/([0-9a-f-]{36})")
_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def alert_for(subject: str) -> Callable[[Received], bool]:
    """A safety alert about ``subject``: it carries a link to the signal's workspace page
    (a data-quality notice about the subject does not)."""
    return lambda item: (
        f"subject {subject}:" in str(item.message["Subject"])
        and _LINK.search(item.body) is not None
    )


async def report(services: RunningServices, result: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(
        base_url=services.ingest_url, headers=services.headers, timeout=30
    ) as client:
        return await client.post("/v1/lab-results", json=result)


async def token_issued(
    services: RunningServices, db: asyncpg.Connection, signal_id: str, recipient: str
) -> str:
    """The token the message to ``recipient`` was issued (what a webhook receiver gets;
    an e-mail carries none), made from the outbox's claims with the notifier's keys."""
    claims = await db.fetchval(
        "SELECT link_claims::text FROM deliveries WHERE signal_id = $1 AND recipient = $2 "
        "AND link_claims IS NOT NULL ORDER BY created_at LIMIT 1",
        uuid.UUID(signal_id),
        recipient,
    )
    assert claims is not None, f"no message with a link for {recipient}"
    (active, *retired) = parse_link_keys(services.link_keys)
    issuer = LinkIssuer(LinkKeyRing(active, tuple(retired)), services.notifier_url, timedelta(1))
    return issuer.token(LinkClaims.model_validate_json(claims))


async def stored(db: asyncpg.Connection, event_ids: list[str]) -> bool:
    ids = [uuid.UUID(i) for i in event_ids]
    count: int = await db.fetchval("SELECT count(*) FROM events WHERE event_id = ANY($1)", ids)
    return count == len(ids)


# --- one link, one assessment --------------------------------------------------------------


async def test_one_acknowledgement_link_records_one_assessment_however_its_signature_is_spelt(
    services: RunningServices, db: asyncpg.Connection, mailbox: MailCatcher
) -> None:
    """A link records one assessment; a second use answers with what the first recorded,
    or is refused. Its signature is base64url of 32 bytes (43 characters, the last
    carrying 2 unused bits): the same link with those bits set, or padded with '=', is the
    same link, not another one."""
    subject = new_subject_id()
    response = await report(services, haemoglobin(subject, "6.0"))
    assert response.status_code == 202, response.text
    (mail, *_) = mailbox.wait_for(alert_for(subject), timeout=60)
    match = _LINK.search(mail.body)
    assert match is not None, mail.body
    signal = match.group(1)
    token = await token_issued(services, db, signal, mail.envelope_to[0])
    last = _B64URL.index(token[-1])
    spellings = [token, token[:-1] + _B64URL[last ^ 1], token[:-1] + _B64URL[last ^ 3]]
    spellings.append(token + "=")

    answers = []
    async with httpx.AsyncClient(base_url=services.notifier_url, timeout=30) as client:
        for n, spelling in enumerate(spellings):
            assessment = "clinically-significant" if n % 2 else "not-clinically-significant"
            answers.append(
                await client.post(
                    f"/v1/signals/{signal}/acknowledgements",
                    json={"token": spelling, "assessment": assessment, "comment": f"use {n}"},
                )
            )

    assert answers[0].status_code == 201, answers[0].text
    for answer in answers[1:]:
        # the same link: nothing new recorded (200 with the first assessment), or refused
        assert answer.status_code != 201, answer.text
    recorded = await db.fetchval(
        "SELECT count(*) FROM events WHERE type = $1 AND payload->>'signal_id' = $2",
        ACKNOWLEDGED,
        signal,
    )
    assert recorded == 1


# --- a unit as sent is free text ------------------------------------------------------------


async def test_text_sent_as_a_unit_never_reaches_an_email(
    services: RunningServices, mailbox: MailCatcher
) -> None:
    """A unit is sender text. A rule judged on the multiple of the upper limit fires
    whatever the unit; its alert shows a fixed phrase for a unit Vigil does not recognise,
    never the text as sent."""
    subject, marker = new_subject_id(), f"Quarrington{uuid.uuid4().hex[:6]}"
    alt = haemoglobin(subject, "250", loinc_code="1742-6", unit=marker)
    alt.update(reference_low="0", reference_high="40")
    response = await report(services, alt)
    assert response.status_code in (202, 422), response.text
    if response.status_code == 202:
        alerts = await asyncio.to_thread(mailbox.wait_for, alert_for(subject), timeout=60)
        assert any(UNIT_NOT_RECOGNISED in item.body for item in alerts)
    leaked = mailbox.matching(
        lambda item: marker in str(item.message["Subject"]) or marker in item.body
    )
    assert leaked == [], [str(item.message["Subject"]) for item in leaked]


async def test_text_sent_as_a_unit_never_reaches_a_data_quality_event(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """Data-quality events are derived, published on vigil.data-quality.v1, and carry no
    text copied from input: an unconvertible unit is said to be unrecognised, not quoted."""
    subject, marker = new_subject_id(), f"Xylophon{uuid.uuid4().hex[:6]}"
    response = await report(services, haemoglobin(subject, "6.0", unit=marker))
    assert response.status_code in (202, 422), response.text
    if response.status_code == 202:
        await eventually(lambda: stored(db, response.json()["event_ids"]), timeout=60)
    quoted = await db.fetchval(
        "SELECT count(*) FROM events WHERE type LIKE '%data_quality%' AND payload_json LIKE $1",
        f"%{marker}%",
    )
    assert quoted == 0


# --- a webhook that never finishes its answer ----------------------------------------------


def with_pi_webhook(url: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The roster with site 01's investigator reached first by a webhook at ``url``."""

    def change(document: dict[str, Any]) -> dict[str, Any]:
        for site in document["sites"]:
            for person in site["people"]:
                if person["id"] == "inv-0101":
                    person["channels"] = [
                        {"webhook": url},
                        {"email": "pi.site01@vigil.example.org"},
                    ]
        return document

    return change


async def test_a_webhook_that_trickles_its_answer_does_not_stop_every_e_mail(
    tmp_path: Path, fresh_dsn: str
) -> None:
    """One delivery never holds up the others: a webhook receiver that answers 200 and
    then sends its body a byte a second for ever is a failed attempt once the send timeout
    has passed (in all, not per read), and an alert for another site leaves meanwhile."""
    async with (
        trickling_receiver() as (url, hits),
        private_stack(
            tmp_path,
            fresh_dsn,
            roster=with_pi_webhook(url),
            VIGIL_NOTIFIER_WEBHOOK_SECRET="webhook-secret-0123456789abcdef",
            VIGIL_NOTIFIER_SEND_TIMEOUT_SECONDS="3",
            VIGIL_NOTIFIER_RETRY_MAX_SECONDS="2",
        ) as stack,
    ):
        await stack.enrol("HOOKED-1", site="PKUPH-01")
        await stack.haemoglobin("HOOKED-1")
        await eventually(lambda: asyncio.sleep(0, bool(hits)), timeout=60, what="webhook hit")
        await asyncio.sleep(5)  # a worker that waits for whole batches would be stuck now

        await stack.enrol("OTHER-1", site="PKUPH-02")  # another site, e-mail only
        await stack.haemoglobin("OTHER-1")
        try:
            await stack.wait_for_alert("OTHER-1", timeout=90)
        except AssertionError:
            worker = (await stack.tasks("notifier"))["delivery-worker"]
            raise AssertionError(
                f"no e-mail for a subject of another site within 90 s while one webhook "
                f"trickles (send timeout 3 s); delivery-worker: {worker}"
            ) from None
