"""FHIR R4 endpoints against the running services."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from tests.e2e.test_haemoglobin_alert import about
from tests.support.mail import MailCatcher
from tests.support.services import RunningServices
from tests.support.waiting import eventually
from tests.unit.test_fhir_mapping import adverse_event, observation

pytestmark = pytest.mark.integration
FHIR = {"content-type": "application/fhir+json"}


def patient(subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:vigil:study:NCT05262686", "value": subject}],
        "gender": "male",
        "birthDate": "1971-03-04",
        "managingOrganization": {"reference": "Organization/PKUPH-02"},
    }


async def test_observation_and_patient_in_a_transaction_alert(
    services: RunningServices, mailbox: MailCatcher
) -> None:
    subject = f"F-{uuid.uuid4().hex[:8]}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": patient(subject), "request": {"method": "POST", "url": "Patient"}},
            {
                "resource": observation(
                    id=f"o-{subject}", subject={"reference": f"Patient/{subject}"}
                ),
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    async with httpx.AsyncClient(base_url=services.ingest_url, headers=services.headers) as client:
        response = await client.post("/fhir/r4", content=json.dumps(bundle), headers=FHIR)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "transaction-response"
    assert [e["response"]["status"] for e in body["entry"]] == ["201 Created"] * 2
    (mail, *_) = mailbox.wait_for(about(subject))
    assert "84 g/L" in mail.body


async def test_invalid_observation_gets_an_operation_outcome_and_is_kept(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    resource = observation(status="bogus", id=f"bad-{uuid.uuid4().hex[:6]}")
    raw = json.dumps(resource).encode()
    async with httpx.AsyncClient(base_url=services.ingest_url, headers=services.headers) as client:
        response = await client.post("/fhir/r4/Observation", content=raw, headers=FHIR)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == ["Observation.status"]
    row = await db.fetchrow("SELECT channel, outcome FROM received_messages WHERE raw = $1", raw)
    assert (row["channel"], row["outcome"]) == ("fhir", "rejected")


async def test_a_bundle_whose_entry_is_not_a_list_gets_400_not_the_entry_cap(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """An object where Bundle.entry's list belongs is a malformed Bundle (400 naming
    Bundle.entry, like any Bundle of the wrong structure), not one over the entry cap (413,
    "send it in parts")."""
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": {"resource": patient("X")}}
    raw = json.dumps({**bundle, "id": uuid.uuid4().hex}).encode()
    async with httpx.AsyncClient(base_url=services.ingest_url, headers=services.headers) as client:
        response = await client.post("/fhir/r4", content=raw, headers=FHIR)
    assert response.status_code == 400, response.text
    (issue,) = response.json()["issue"]
    assert issue["expression"] == ["Bundle.entry"]
    assert "list" in issue["diagnostics"]
    row = await db.fetchrow("SELECT channel, outcome FROM received_messages WHERE raw = $1", raw)
    assert (row["channel"], row["outcome"]) == ("fhir", "rejected")


@pytest.mark.parametrize("media", ["application/fhir+xml", "text/plain", None])
async def test_a_body_that_does_not_say_it_is_fhir_json_gets_415_and_is_kept(
    services: RunningServices, db: asyncpg.Connection, media: str | None
) -> None:
    """A FHIR XML or text body is not read as JSON on a guess, even when it parses."""
    raw = json.dumps({**patient(f"MT-{uuid.uuid4().hex[:8]}"), "id": uuid.uuid4().hex}).encode()
    headers = {"content-type": media} if media else {}
    async with httpx.AsyncClient(base_url=services.ingest_url, headers=services.headers) as client:
        response = await client.post("/fhir/r4/Patient", content=raw, headers=headers)
    assert response.status_code == 415, response.text
    (issue,) = response.json()["issue"]
    assert (issue["code"], issue["expression"]) == ("not-supported", ["Content-Type"])
    row = await db.fetchrow("SELECT channel, outcome FROM received_messages WHERE raw = $1", raw)
    assert (row["channel"], row["outcome"]) == ("fhir", "rejected")


async def test_batch_accepts_the_good_entries_and_reports_the_bad(
    services: RunningServices,
) -> None:
    subject = f"B-{uuid.uuid4().hex[:8]}"
    good = observation(id=f"g-{subject}", subject={"reference": f"Patient/{subject}"})
    bad = observation(id=f"b-{subject}", valueQuantity={"value": "lots"})
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": good},
            {"resource": bad},
            {"resource": {"resourceType": "Encounter"}},
        ],
    }
    async with httpx.AsyncClient(base_url=services.ingest_url, headers=services.headers) as client:
        response = await client.post("/fhir/r4", content=json.dumps(bundle), headers=FHIR)
        created = await client.post(
            "/fhir/r4/Patient", content=json.dumps(patient(subject)), headers=FHIR
        )
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert statuses == ["201 Created", "422 Unprocessable Entity", "200 OK"]
    assert created.status_code == 201
    assert created.headers["location"].startswith("Patient/")


async def test_fhir_adverse_event_is_recorded(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    subject = f"FA-{uuid.uuid4().hex[:8]}"
    resource = adverse_event(
        identifier={"value": f"AE-{subject}"}, subject={"reference": f"Patient/{subject}"}
    )
    async with httpx.AsyncClient(base_url=services.ingest_url, headers=services.headers) as client:
        response = await client.post(
            "/fhir/r4/AdverseEvent", content=json.dumps(resource), headers=FHIR
        )
    assert response.status_code == 201, response.text
    event_id = uuid.UUID(response.headers["location"].split("/")[1])
    stored = await eventually(
        lambda: db.fetchval("SELECT payload_json FROM events WHERE event_id = $1", event_id),
        what="the adverse event in the audit log",
    )
    assert json.loads(stored)["serious"] is True


@pytest.mark.parametrize(
    ("headers", "status", "element"),
    [
        ({**FHIR, "content-encoding": "br"}, 415, "Content-Encoding"),
        ({"content-type": "application/fhir+json; fhirVersion=3.0"}, 415, "Content-Type"),
        ({**FHIR, "accept": "application/fhir+xml"}, 406, "Accept"),
    ],
)
async def test_what_the_headers_ask_and_vigil_cannot_do_is_refused_and_kept(
    services: RunningServices,
    db: asyncpg.Connection,
    headers: dict[str, str],
    status: int,
    element: str,
) -> None:
    """An encoding Vigil does not decode is not read as if plain, an STU3 resource is not
    read as R4, and an answer in XML is not replaced by JSON (RFC 9110 15.5.16, FHIR R4
    3.1.0.1.10)."""
    raw = json.dumps(observation(id=f"h-{uuid.uuid4().hex[:12]}")).encode()
    async with httpx.AsyncClient(base_url=services.ingest_url, headers=services.headers) as client:
        response = await client.post("/fhir/r4/Observation", content=raw, headers=headers)
    assert response.status_code == status, response.text
    (issue,) = response.json()["issue"]
    assert issue["expression"] == [element]
    if element == "Content-Encoding":
        assert response.headers["accept-encoding"] == "gzip, identity"
    row = await db.fetchrow("SELECT outcome FROM received_messages WHERE raw = $1", raw)
    assert row["outcome"] == "rejected"


async def test_delete_is_405_with_allow_and_a_put_must_carry_its_urls_id(
    services: RunningServices,
) -> None:
    async with httpx.AsyncClient(base_url=services.ingest_url, headers=services.headers) as client:
        deleted = await client.delete("/fhir/r4/Observation/abc")
        on_type = await client.patch("/fhir/r4/Patient", content=b"{}", headers=FHIR)
        other_id = await client.put(
            "/fhir/r4/Observation/abc", content=json.dumps(observation()), headers=FHIR
        )
    assert (deleted.status_code, deleted.headers["allow"]) == (405, "PUT")
    assert (on_type.status_code, on_type.headers["allow"]) == (405, "POST")
    assert deleted.json()["resourceType"] == "OperationOutcome"
    assert other_id.status_code == 400, other_id.text
    assert other_id.json()["issue"][0]["expression"] == ["Observation.id"]


async def test_the_capability_statement_needs_no_key(services: RunningServices) -> None:
    async with httpx.AsyncClient(base_url=services.ingest_url) as client:
        answer = await client.get("/fhir/r4/metadata")
        xml = await client.get("/fhir/r4/metadata", headers={"accept": "application/fhir+xml"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["fhirVersion"] == "4.0.1"
    assert xml.status_code == 406
