"""Outside tester, issue 15 round 2: medications over FHIR R4 against the running services
(ingest, broker, rules, PostgreSQL), as a site's EHR sends them. Each test states what a
demanding user expects and why."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.results import stored_payloads
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
FHIR = {"content-type": "application/fhir+json"}
STUDY_SYSTEM = "urn:vigil:study:NCT05262686"
SNOMED = "http://snomed.info/sct"
ATC = "http://www.whocc.no/atc"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
RAISED = "org.vigil.safety_signal.raised.v1"
RETRACTED = "org.vigil.safety_signal.retracted.v1"
RESOLVED = "org.vigil.safety_signal.resolved.v1"
STEROID = "steroid-prednisone-equivalent-gt-10"
ORAL = {"coding": [{"system": SNOMED, "code": "26643006", "display": "Oral route"}]}


def _patient(subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": STUDY_SYSTEM, "value": subject}],
        "gender": "female",
        "birthDate": "1985-04-02",
        "managingOrganization": {"reference": "Organization/PKUPH-01"},
    }


def _prednisone_statement(
    subject_reference: dict[str, Any],
    drug: dict[str, Any],
    dose_mg: float,
    start: str,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "resourceType": "MedicationStatement",
        "status": "active",
        "medicationCodeableConcept": drug,
        "subject": subject_reference,
        "effectivePeriod": {"start": start},
        "dosage": [
            {
                "route": ORAL,
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [
                    {"doseQuantity": {"value": dose_mg, "unit": "mg", "system": UCUM, "code": "mg"}}
                ],
            }
        ],
        **extra,
    }


async def _steroid_events(db: asyncpg.Connection, subject: str, kind: str) -> list[str]:
    return [p for p in await stored_payloads(db, subject, kind) if STEROID in p]


async def test_a_us_core_rxnorm_coded_statement_does_not_lose_a_transaction(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    """A US Core export: a transaction enrolling two subjects, one with prednisone coded as
    US Core binds it (RxNorm 8640, no display and no text: Coding.display and
    CodeableConcept.text are 0..1 in FHIR R4), the other with methylprednisolone 500 mg IV
    named in Chinese with its ATC code. Vigil answers 422 'the drug is required' for the
    RxNorm-coded entry, and since a transaction is all or nothing (FHIR R4 http.html#trules),
    neither subject is enrolled and the 500 mg pulse is lost with it: two steroid signals
    that never reach anyone. Expected: the coded drug is read (or kept with a warning and a
    data-quality issue naming medication[x]); the transaction succeeds and the second
    subject's pulse raises the steroid signal."""
    first, second = (f"FM-{uuid.uuid4().hex[:8]}" for _ in range(2))
    first_url, second_url = (f"urn:uuid:{uuid.uuid4()}" for _ in range(2))
    pulse = {
        "resourceType": "MedicationAdministration",
        "identifier": [{"system": "urn:ehr:mar", "value": f"mar-{second}"}],
        "status": "completed",
        "medicationCodeableConcept": {
            "coding": [{"system": ATC, "code": "H02AB04"}],
            "text": "注射用甲泼尼龙琥珀酸钠",
        },
        "subject": {"reference": second_url},
        "effectiveDateTime": "2026-11-20T09:00:00+08:00",
        "dosage": {
            "route": {"coding": [{"system": SNOMED, "code": "47625008"}]},
            "dose": {"value": 500, "unit": "mg", "system": UCUM, "code": "mg"},
        },
    }
    statement = _prednisone_statement(
        {"reference": first_url},
        {"coding": [{"system": RXNORM, "code": "8640"}]},
        20,
        "2026-11-18",
        identifier=[{"system": "urn:ehr:ms", "value": f"ms-{first}"}],
    )
    entries = [(first_url, _patient(first)), (second_url, _patient(second))]
    entries += [(f"urn:uuid:{uuid.uuid4()}", statement), (f"urn:uuid:{uuid.uuid4()}", pulse)]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": url, "resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
            for url, r in entries
        ],
    }
    response = await client.post("/fhir/r4", content=json.dumps(bundle), headers=FHIR)
    assert response.status_code == 200, response.text
    raised = await eventually(
        lambda: _steroid_events(db, second, RAISED), timeout=60, what="the pulse's signal"
    )
    assert raised


async def test_a_statement_put_with_a_tapered_dose_does_not_erase_the_signal(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    """An EHR keeps one MedicationStatement per drug and updates it (PUT
    /MedicationStatement/<id>, FHIR R4 http.html#update) when the dose changes: prednisone
    20 mg/day from 18 November, then the same statement, still active, 5 mg/day from 25
    November. The 20 mg/day week happened (FHIR marks a record made in error with status
    entered-in-error, which this is not), so the steroid signal is true and ends with the
    taper: resolved or amended. Vigil retracts it, telling the investigators it never
    was. Expected: no retraction; the signal is resolved (or amended)."""
    subject = f"FM-{uuid.uuid4().hex[:8]}"
    enrolled = await client.post(
        "/fhir/r4/Patient", content=json.dumps(_patient(subject)), headers=FHIR
    )
    assert enrolled.status_code == 201, enrolled.text
    drug = {"coding": [{"system": ATC, "code": "H02AB07"}], "text": "prednisone"}
    reference = {"identifier": {"system": STUDY_SYSTEM, "value": subject}}
    resource_id = f"ms-{subject}"
    before = _prednisone_statement(reference, drug, 20, "2026-11-18", id=resource_id)
    after = _prednisone_statement(reference, drug, 5, "2026-11-25", id=resource_id)
    first = await client.put(
        f"/fhir/r4/MedicationStatement/{resource_id}", content=json.dumps(before), headers=FHIR
    )
    assert first.status_code in (200, 201), first.text
    await eventually(lambda: _steroid_events(db, subject, RAISED), timeout=60, what="the signal")
    second = await client.put(
        f"/fhir/r4/MedicationStatement/{resource_id}", content=json.dumps(after), headers=FHIR
    )
    assert second.status_code in (200, 201), second.text

    async def ended() -> list[str]:
        return await _steroid_events(db, subject, RESOLVED) + await _steroid_events(
            db, subject, RETRACTED
        )

    await eventually(ended, timeout=60, what="the signal ended")
    assert await _steroid_events(db, subject, RETRACTED) == []
