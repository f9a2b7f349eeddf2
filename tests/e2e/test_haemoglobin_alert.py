"""A low haemoglobin travels from HTTP to the investigators' mailboxes, on real components."""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from services.notifier.adapters.roster_files import load_roster
from services.notifier.domain.roster import SITE_ALERT_ROLES
from tests.support.mail import MailCatcher, Received
from tests.support.results import haemoglobin
from tests.support.services import REPO
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

STUDY = "NCT05262686"
ROSTER = load_roster(REPO / "studies" / STUDY / "roster.yaml")


def new_subject_id() -> str:
    return f"T-{uuid.uuid4().hex[:10]}"


def investigators_of(site_id: str) -> set[str]:
    site = next(site for site in ROSTER.sites if site.id == site_id)
    return {str(p.email) for p in site.people if p.role in SITE_ALERT_ROLES}


def enrolment(subject_id: str, site_id: str = "PKUPH-01") -> dict[str, Any]:
    return {
        "subject_id": subject_id,
        "site_id": site_id,
        "sex": "F",
        "birth_date": "1985-04-12",
        "weight_kg": 61.5,
    }


def about(subject_id: str) -> Any:
    return lambda item: f"subject {subject_id}:" in str(item.message["Subject"])


async def stored(db: asyncpg.Connection, event_id: str) -> bool:
    count: int = await db.fetchval(
        "SELECT count(*) FROM events WHERE event_id = $1", uuid.UUID(event_id)
    )
    return count == 1


async def enrol(client: httpx.AsyncClient, db: asyncpg.Connection, body: dict[str, Any]) -> None:
    response = await client.post("/v1/subjects", json=body)
    assert response.status_code == 202, response.text
    event_id = response.json()["event_ids"][0]
    await eventually(lambda: stored(db, event_id), what="enrolment stored")


async def test_low_haemoglobin_emails_each_site_investigator_once(
    client: httpx.AsyncClient, db: asyncpg.Connection, mailbox: MailCatcher
) -> None:
    subject = new_subject_id()
    await enrol(client, db, enrolment(subject, "PKUPH-02"))

    response = await client.post("/v1/lab-results", json=haemoglobin(subject, "8.4"))

    assert response.status_code == 202, response.text
    expected = investigators_of("PKUPH-02")
    mails = mailbox.wait_for(about(subject), count=len(expected), timeout=30)
    assert {to for m in mails for to in m.envelope_to} == expected
    assert len(mails) == len(expected)
    for mail in mails:
        assert "haemoglobin" in mail.body
        assert "8.4 g/dL" in mail.body
        assert "<= 9 g/dL" in mail.body
        assert "anaemia-hb-le-9" in mail.body
        assert re.search(rf"^Subject: +{re.escape(subject)}\r?$", mail.body, re.MULTILINE)


async def test_alert_carries_no_names_from_the_roster(
    client: httpx.AsyncClient, db: asyncpg.Connection, mailbox: MailCatcher
) -> None:
    subject = new_subject_id()
    await enrol(client, db, enrolment(subject, "PKUPH-01"))
    await client.post("/v1/lab-results", json=haemoglobin(subject, "85", "g/L"))

    mails = mailbox.wait_for(about(subject), count=len(investigators_of("PKUPH-01")))
    names = [p.name for site in ROSTER.sites for p in site.people]
    names += [p.name for p in ROSTER.study_contacts]
    for mail in mails:
        text = mail.message.as_string()
        assert not [name for name in names if name in text]
        assert "85 g/L" in mail.body


async def test_value_in_mmol_per_litre_is_converted_before_the_threshold(
    client: httpx.AsyncClient, db: asyncpg.Connection, mailbox: MailCatcher
) -> None:
    low, normal = new_subject_id(), new_subject_id()
    await enrol(client, db, enrolment(low, "PKUPH-02"))
    await enrol(client, db, enrolment(normal, "PKUPH-02"))
    # 5.5 mmol/L = 8.86 g/dL (fires); 5.6 mmol/L = 9.02 g/dL (does not)
    sent = await client.post(
        "/v1/lab-results",
        json=[haemoglobin(normal, "5.6", "mmol/L"), haemoglobin(low, "5.5", "mmol/L")],
    )
    assert sent.status_code == 202, sent.text
    normal_id = sent.json()["event_ids"][0]

    mailbox.wait_for(about(low))
    await eventually(lambda: stored(db, normal_id), what="normal result stored")
    signals = await db.fetchval(
        "SELECT count(*) FROM events WHERE type LIKE '%safety_signal%' "
        "AND envelope->>'causationid' = $1",
        normal_id,
    )
    assert signals == 0
    assert mailbox.matching(about(normal)) == []


async def test_normal_value_is_stored_and_sends_nothing(
    client: httpx.AsyncClient, db: asyncpg.Connection, mailbox: MailCatcher
) -> None:
    subject = new_subject_id()
    await enrol(client, db, enrolment(subject))

    response = await client.post("/v1/lab-results", json=haemoglobin(subject, "13.2"))
    assert response.status_code == 202
    event_id = response.json()["event_ids"][0]

    await eventually(lambda: stored(db, event_id), what="normal result stored")
    row = await db.fetchrow(
        "SELECT type, envelope FROM events WHERE event_id = $1", uuid.UUID(event_id)
    )
    assert row["type"] == "org.vigil.lab_result.reported.v1"
    # a signal would have been committed in the same transaction as the result
    signals = await db.fetchval(
        "SELECT count(*) FROM events WHERE subject_id = $1 AND type LIKE '%safety_signal%'",
        subject,
    )
    assert signals == 0
    deliveries = await db.fetchval(
        "SELECT count(*) FROM deliveries WHERE subject_line LIKE $1", f"%{subject}%"
    )
    assert deliveries == 0
    assert mailbox.matching(about(subject)) == []


async def test_same_event_twice_gives_one_row_and_one_email(
    client: httpx.AsyncClient, db: asyncpg.Connection, mailbox: MailCatcher
) -> None:
    subject = new_subject_id()
    await enrol(client, db, enrolment(subject, "PKUPH-02"))
    result = haemoglobin(subject, "7.9")

    first = await client.post("/v1/lab-results", json=result)
    second = await client.post("/v1/lab-results", json=result)
    assert first.status_code == second.status_code == 202
    event_id = first.json()["event_ids"][0]
    assert second.json()["event_ids"] == [event_id]
    # a later result of the same subject shares the partition, so once it is stored
    # both copies before it have been consumed
    marker = await client.post("/v1/lab-results", json=haemoglobin(subject, "12.5"))
    await eventually(lambda: stored(db, marker.json()["event_ids"][0]), what="marker stored")

    assert (
        await db.fetchval("SELECT count(*) FROM events WHERE event_id = $1", uuid.UUID(event_id))
        == 1
    )
    # one signal, raised once (and resolved by the marker, which is back in range)
    assert (
        await db.fetchval(
            "SELECT count(*) FROM events WHERE subject_id = $1 "
            "AND type = 'org.vigil.safety_signal.raised.v1'",
            subject,
        )
        == 1
    )
    expected = investigators_of("PKUPH-02")
    await eventually(
        lambda: db.fetchval(
            "SELECT count(*) = $2 FROM deliveries WHERE status = 'sent' AND subject_line LIKE $1",
            f"%{subject}%",
            len(expected),
        ),
        what="deliveries sent",
    )
    mails: list[Received] = mailbox.matching(about(subject))
    assert sorted(to for m in mails for to in m.envelope_to) == sorted(expected)


async def test_unknown_subject_alerts_the_medical_monitor(
    client: httpx.AsyncClient, mailbox: MailCatcher
) -> None:
    subject = new_subject_id()
    response = await client.post("/v1/lab-results", json=haemoglobin(subject, "6.8"))
    assert response.status_code == 202

    monitors = {str(p.email) for p in ROSTER.study_contacts if p.role == "medical_monitor"}
    mails = mailbox.wait_for(about(subject), count=len(monitors))
    assert {to for m in mails for to in m.envelope_to} == monitors
    assert "unknown" in mails[0].body


async def test_malformed_body_gets_422_naming_each_field(client: httpx.AsyncClient) -> None:
    bad = haemoglobin("S-1", "not-a-number", loinc_code="hemoglobin")
    del bad["collected_at"]
    bad["patient_name"] = "Jane Doe"

    response = await client.post("/v1/lab-results", json=[bad])

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    fields = {error["field"] for error in problem["errors"]}
    assert fields == {"0.value", "0.loinc_code", "0.collected_at", "0.patient_name"}
    assert "Jane Doe" not in response.text


async def test_naive_collection_time_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/lab-results",
        json=haemoglobin("S-1", "8.0", collected_at="2026-11-20T08:30:00"),
    )
    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == ["collected_at"]


async def test_body_that_is_not_json_gets_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/lab-results", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["type"] == "json_invalid"


async def test_empty_list_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/subjects", json=[])
    assert response.status_code == 422
    assert response.json()["errors"][0]["type"] == "too_short"


async def test_openapi_documents_both_endpoints(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert {"/v1/subjects", "/v1/lab-results"} <= set(spec["paths"])
