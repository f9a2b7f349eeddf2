"""Issue 14, second outside break round (FHIR R4): what EHRs and laboratory systems send
that Vigil still mishandles, each over real HTTP to the running services (ingest, broker,
rules, PostgreSQL). Every test here failed on the code it was written against and states
what a conformant receiver must do, with the clause."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from tests.e2e.test_found_i14_fhir import (
    INTERPRETATION,
    _haemoglobin,
    _observation,
    _patient,
    _post,
    _transaction,
    _urn,
)
from tests.support.results import new_subject_id, stored_payloads
from tests.support.services import RunningServices
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

LAB_RESULT = "org.vigil.lab_result.reported.v1"
RAISED = "org.vigil.safety_signal.raised.v1"
DATA_QUALITY = "org.vigil.data_quality.issue_raised.v1"


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
        _transaction((patient_url, patient), (_urn(), _haemoglobin(patient_url))),
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
    resource = _observation(
        f"Patient/{subject}",
        valueString=text,
        interpretation=[{"coding": [{"system": INTERPRETATION, "code": "L"}]}],
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
