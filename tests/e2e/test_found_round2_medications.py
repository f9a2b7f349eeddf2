"""A medication record's free text never leaves Vigil (outside review, round 2).

A site's EDC exports a drug, frequency or route as typed, and a site may type a patient's
name or phone number there. README.md and docs/security.md promise that e-mails carry
subject ids, analytes, values and codes, and that data-quality events carry no free text
copied from input: a signal names the drug by the rule's name for what it matched, and a
data-quality issue names the field that could not be read, never its value.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import pytest

from tests.support.mail import MailCatcher
from tests.support.results import concomitant_medication, enrolment, new_subject_id, stored_payloads
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

RAISED = "org.vigil.safety_signal.raised.v1"
DATA_QUALITY = "org.vigil.data_quality.issue_raised.v1"


def marker() -> str:
    """A stand-in for a patient's name that no other text contains."""
    return f"Qx{uuid.uuid4().hex[:8]}"


async def enrol(client: httpx.AsyncClient, db: asyncpg.Connection, subject: str) -> None:
    answer = await client.post("/v1/subjects", json=enrolment(subject))
    assert answer.status_code == 202, answer.text
    await eventually(
        lambda: db.fetchval(
            "SELECT count(*) FROM events WHERE subject_id = $1 AND type LIKE '%enrolled%'",
            subject,
        ),
        timeout=60,
        what="the enrolment stored",
    )


async def test_a_medications_drug_text_never_reaches_the_alert_email(
    client: httpx.AsyncClient, db: asyncpg.Connection, mailbox: MailCatcher
) -> None:
    """A concomitant medication whose ``drug`` is a site's free text ("prednisone - for
    <patient name>, call <phone>"), 20 mg QD oral, fires the steroid rule (> 10 mg/day
    prednisone-equivalent). The e-mail names the drug as the rule does ("prednisone"):
    neither its Subject nor its body quotes the text as sent."""
    subject, name = new_subject_id(), marker()
    await enrol(client, db, subject)
    medication = concomitant_medication(subject, drug=f"prednisone - for Mrs {name}, call 555-0199")
    answer = await client.post("/v1/concomitant-medications", json=medication)
    assert answer.status_code == 202, answer.text
    await eventually(
        lambda: stored_payloads(db, subject, RAISED), timeout=60, what="the steroid signal"
    )
    mails = await asyncio.to_thread(
        mailbox.wait_for,
        lambda item: f"subject {subject}" in str(item.message["Subject"]),
        timeout=60,
    )
    leaked = [str(m.message["Subject"]) for m in mails if name in m.everything]
    assert leaked == [], f"the drug's free text is in the e-mail: {leaked}"
    assert all("prednisone" in str(m.message["Subject"]) for m in mails)


async def test_a_medications_free_text_never_reaches_a_data_quality_event(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    """A corticosteroid with a frequency a site typed as free text ("as told by Dr
    <name>"), which the steroid rule cannot turn into mg/day. The DataQualityIssueRaised
    ``dose-not-convertible`` says which field was not recognised, never what was sent."""
    subject, name = new_subject_id(), marker()
    await enrol(client, db, subject)
    medication = concomitant_medication(subject, frequency=f"as told by Dr {name}")
    answer = await client.post("/v1/concomitant-medications", json=medication)
    assert answer.status_code == 202, answer.text
    issues = await eventually(
        lambda: stored_payloads(db, subject, DATA_QUALITY), timeout=60, what="a data-quality issue"
    )
    leaked = [p for p in issues if name in p]
    assert leaked == [], f"free text in a data-quality event: {leaked}"
    assert any("frequency not recognised" in p for p in issues)
