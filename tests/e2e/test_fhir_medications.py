"""FHIR R4 medications against the running services: an EHR's transaction enrols a subject
(Patient, with a ResearchSubject kept but not used) and reports a MedicationAdministration
of methylprednisolone 500 mg IV; the steroid rule raises its signal."""

from __future__ import annotations

import json
import uuid

import asyncpg
import httpx
import pytest

from tests.support.results import stored_payloads
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
FHIR = {"content-type": "application/fhir+json"}
RAISED = "org.vigil.safety_signal.raised.v1"
RECORDED = "org.vigil.medication.recorded.v1"


async def test_a_methylprednisolone_pulse_over_fhir_raises_the_steroid_signal(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    subject = f"FM-{uuid.uuid4().hex[:8]}"
    patient_url, medication_url = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": patient_url,
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:vigil:study:NCT05262686", "value": subject}],
                    "gender": "female",
                    "birthDate": "1985-04-02",
                    "managingOrganization": {"reference": "Organization/PKUPH-01"},
                },
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "ResearchSubject",
                    "status": "on-study",
                    "study": {"reference": "ResearchStudy/NCT05262686"},
                    "individual": {"reference": patient_url},
                },
                "request": {"method": "POST", "url": "ResearchSubject"},
            },
            {
                "fullUrl": medication_url,
                "resource": {
                    "resourceType": "Medication",
                    "code": {
                        "coding": [
                            {
                                "system": "http://www.whocc.no/atc",
                                "code": "H02AB04",
                                "display": "methylprednisolone",
                            }
                        ]
                    },
                },
                "request": {"method": "POST", "url": "Medication"},
            },
            {
                "resource": {
                    "resourceType": "MedicationAdministration",
                    "identifier": [{"system": "urn:ehr:mar", "value": f"mar-{subject}"}],
                    "status": "completed",
                    "medicationReference": {"reference": medication_url},
                    "subject": {"reference": patient_url},
                    "effectiveDateTime": "2026-11-20T09:00:00+08:00",
                    "dosage": {
                        "route": {
                            "coding": [
                                {
                                    "system": "http://snomed.info/sct",
                                    "code": "47625008",
                                    "display": "Intravenous route",
                                }
                            ]
                        },
                        "dose": {
                            "value": 500,
                            "unit": "mg",
                            "system": "http://unitsofmeasure.org",
                            "code": "mg",
                        },
                    },
                },
                "request": {"method": "POST", "url": "MedicationAdministration"},
            },
        ],
    }
    response = await client.post("/fhir/r4", content=json.dumps(bundle), headers=FHIR)
    assert response.status_code == 200, response.text
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert statuses == ["201 Created", "200 OK", "200 OK", "201 Created"]
    raised = await eventually(
        lambda: stored_payloads(db, subject, RAISED), timeout=60, what="the steroid signal"
    )
    assert any("steroid-prednisone-equivalent-gt-10" in payload for payload in raised)
    (recorded,) = await stored_payloads(db, subject, RECORDED)
    assert json.loads(recorded)["drug_code"] == "H02AB04"


async def test_a_statement_alone_is_created_updated_and_refused_naming_the_element(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    """POST and PUT of a single MedicationStatement, as of an Observation; one without a
    drug is a 422 naming medication[x]; the CapabilityStatement lists both resources."""
    subject = f"FM-{uuid.uuid4().hex[:8]}"
    resource = {
        "resourceType": "MedicationStatement",
        "id": f"ms-{subject}",
        "status": "active",
        "medicationCodeableConcept": {"text": "prednisone"},
        "subject": {"identifier": {"system": "urn:vigil:study:NCT05262686", "value": subject}},
        "effectiveDateTime": "2026-11-20",
        "dosage": [
            {
                "route": {"text": "oral"},
                "timing": {"code": {"coding": [{"code": "QD"}]}},
                "doseAndRate": [{"doseQuantity": {"value": 20, "unit": "mg"}}],
            }
        ],
    }
    created = await client.post(
        "/fhir/r4/MedicationStatement", content=json.dumps(resource), headers=FHIR
    )
    assert created.status_code == 201, created.text
    assert created.headers["location"].startswith("MedicationStatement/")
    updated = await client.put(
        f"/fhir/r4/MedicationStatement/{resource['id']}",
        content=json.dumps({**resource, "status": "entered-in-error"}),
        headers=FHIR,
    )
    assert updated.status_code == 201, updated.text
    no_drug = {**resource, "medicationCodeableConcept": {"coding": []}}
    refused = await client.post(
        "/fhir/r4/MedicationStatement", content=json.dumps(no_drug), headers=FHIR
    )
    assert refused.status_code == 422, refused.text
    expressions = [e for i in refused.json()["issue"] for e in i["expression"]]
    assert expressions == ["MedicationStatement.medication[x]"]

    async def both() -> list[str]:
        found = await stored_payloads(db, subject, RECORDED)
        return found if len(found) == 2 else []

    records = [json.loads(r) for r in await eventually(both, timeout=60, what="both records")]
    withdrawn = next(r for r in records if r["stop"] is not None)
    assert withdrawn["stop"] == withdrawn["start"]  # entered in error: a taking of no length
    assert {r["medication_id"] for r in records} == {resource["id"]}
    statement = (await client.get("/fhir/r4/metadata")).json()
    types = {r["type"] for r in statement["rest"][0]["resource"]}
    assert {"MedicationStatement", "MedicationAdministration"} <= types
