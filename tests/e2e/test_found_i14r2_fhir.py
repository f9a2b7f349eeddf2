"""Issue 14, second outside break round (FHIR R4): what EHRs and laboratory systems send
that Vigil still mishandles, each over real HTTP to the running services (ingest, broker,
rules, PostgreSQL). Every test here failed on the code it was written against and states
what a conformant receiver must do, with the clause."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.results import new_subject_id, stored_payloads
from tests.support.services import RunningServices
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

STUDY_SYSTEM = "urn:vigil:study:NCT05262686"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
LAB_RESULT = "org.vigil.lab_result.reported.v1"
RAISED = "org.vigil.safety_signal.raised.v1"
RETRACTED = "org.vigil.safety_signal.retracted.v1"
DATA_QUALITY = "org.vigil.data_quality.issue_raised.v1"
FHIR_JSON = "application/fhir+json"


def _patient(subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": STUDY_SYSTEM, "value": subject}],
        "gender": "female",
        "birthDate": "1985-04-12",
        "managingOrganization": {"reference": "Organization/PKUPH-01"},
    }


def _hb(subject_reference: str, value: Any = 7.0, **body: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5.9", "value": uuid.uuid4().hex}],
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "718-7"}]},
        "subject": {"reference": subject_reference},
        "effectiveDateTime": "2026-11-20T08:00:00+08:00",
        "valueQuantity": {"value": value, "unit": "g/dL", "system": UCUM, "code": "g/dL"},
    }
    resource.update(body)
    return {k: v for k, v in resource.items() if v is not None}


def _urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def _bundle(kind: str, *entries: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {
                "fullUrl": url,
                "resource": resource,
                "request": {"method": "POST", "url": resource["resourceType"]},
            }
            for url, resource in entries
        ],
    }


async def _request(
    services: RunningServices,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=services.ingest_url, timeout=60) as client:
        return await client.request(
            method,
            path,
            content=body,
            headers={**services.headers, "content-type": FHIR_JSON, **(headers or {})},
        )


async def _post(
    services: RunningServices,
    path: str,
    resource: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await _request(services, "POST", path, json.dumps(resource).encode(), headers)


async def _payloads(db: asyncpg.Connection, subject: str, kind: str) -> list[dict[str, Any]]:
    return [json.loads(p) for p in await stored_payloads(db, subject, kind)]


async def _issues(db: asyncpg.Connection, subject: str) -> list[dict[str, Any]]:
    return [
        i for i in await _payloads(db, subject, DATA_QUALITY) if i.get("issue") != "unknown-subject"
    ]


async def test_a_lab_transaction_whose_patient_names_no_organization_is_accepted(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """Sent: a transaction from a laboratory: Patient (study identifier, gender,
    birthDate, no managingOrganization - the lab does not know the trial site) and a
    haemoglobin 7.0 g/dL referencing it by urn:uuid.

    Should: FHIR R4 Patient.managingOrganization is 0..1 (US Core Patient does not
    require it either); README: the US Core lab transaction is accepted with its
    Observations recorded. Vigil may decline to enrol from it, but the transaction is
    accepted and the result recorded and judged (anaemia alert), as a result for a
    subject whose site is not known (README Safety rules: judged, medical monitor).

    Came back: 422 for the whole transaction, "managingOrganization must reference
    Organization/<site id>" at Bundle.entry[0].resource.Patient.managingOrganization;
    the haemoglobin of 7.0 was lost with it."""
    subject = new_subject_id("FO")
    patient_url = _urn()
    patient = {k: v for k, v in _patient(subject).items() if k != "managingOrganization"}
    answer = await _post(
        services,
        "/fhir/r4",
        _bundle("transaction", (patient_url, patient), (_urn(), _hb(patient_url))),
    )
    assert answer.status_code == 200, answer.text
    await eventually(lambda: _payloads(db, subject, RAISED), timeout=60, what="alert")


@pytest.mark.parametrize("text", ["7,0", "7.0 g/dL"])
async def test_a_haemoglobin_value_string_a_lab_writes_is_judged_or_raised(
    services: RunningServices, db: asyncpg.Connection, text: str
) -> None:
    """Sent: haemoglobin valueString ``7,0`` or ``7.0 g/dL`` with interpretation L.

    Should: issue 14 item 3/4: a haemoglobin Vigil cannot read as a number is raised
    (unreadable / data-quality to the medical monitor) or judged; never kept as text
    with nobody told.

    Came back: 201; stored with value None, unit None, value_text "7,0" / "7.0 g/dL",
    flags [L]; no alert, no data-quality issue (README promises that a valueString
    number of a protocol analyte raises unit-not-convertible, and that unreadable values
    flagged abnormal reach the medical monitor; these forms do neither)."""
    subject = new_subject_id("FS")
    resource = _hb(
        f"Patient/{subject}",
        valueQuantity=None,
        valueString=text,
        interpretation=[
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                        "code": "L",
                    }
                ]
            }
        ],
    )
    answer = await _post(services, "/fhir/r4/Observation", resource)
    assert answer.status_code in (200, 201), answer.text

    async def heard() -> bool | None:
        return bool(await _payloads(db, subject, RAISED) or await _issues(db, subject)) or None

    try:
        await eventually(heard, timeout=45, what="judged or raised")
    except AssertionError as error:
        stored = await _payloads(db, subject, LAB_RESULT)
        raise AssertionError(f"{error}; stored: {stored}") from None
