"""Issue 14, outside break round (FHIR R4): what EHRs and laboratory systems send that
Vigil still mishandles, each over real HTTP to the running services (ingest, broker,
rules, PostgreSQL). Every test here failed on the code it was written against and
states what a conformant receiver must do, with the clause."""

from __future__ import annotations

import asyncio
import gzip
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
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
LAB_RESULT = "org.vigil.lab_result.reported.v1"
RAISED = "org.vigil.safety_signal.raised.v1"
DATA_QUALITY = "org.vigil.data_quality.issue_raised.v1"
FHIR_JSON = "application/fhir+json"


def _patient(subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [
            {"system": "urn:oid:2.16.840.1.113883.19.5", "value": "MRN0042"},
            {"system": STUDY_SYSTEM, "value": subject},
        ],
        "gender": "female",
        "birthDate": "1985-04-12",
        "managingOrganization": {"reference": "Organization/PKUPH-01"},
    }


def _observation(subject_reference: str, loinc: str = "718-7", **body: Any) -> dict[str, Any]:
    """A final laboratory Observation (haemoglobin by default) with its own identifier;
    ``body`` adds or replaces elements (value[x] included)."""
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5.9", "value": uuid.uuid4().hex}],
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "subject": {"reference": subject_reference},
        "effectiveDateTime": "2026-11-20T08:00:00+08:00",
    }
    resource.update(body)
    return resource


def _haemoglobin(subject_reference: str, value: float = 7.0) -> dict[str, Any]:
    return _observation(
        subject_reference,
        valueQuantity={"value": value, "unit": "g/dL", "system": UCUM, "code": "g/dL"},
        referenceRange=[
            {"low": {"value": 12, "unit": "g/dL", "system": UCUM, "code": "g/dL"},
             "high": {"value": 16, "unit": "g/dL", "system": UCUM, "code": "g/dL"}}
        ],
    )  # fmt: skip


def _urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


async def _send(
    services: RunningServices,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=services.ingest_url, timeout=60) as client:
        return await client.request(
            method,
            path,
            content=body,
            headers={**services.headers, "content-type": FHIR_JSON, **(headers or {})},
        )


async def _post(services: RunningServices, path: str, resource: dict[str, Any]) -> httpx.Response:
    return await _send(services, "POST", path, json.dumps(resource).encode())


def _transaction(*entries: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": full_url,
                "resource": resource,
                "request": {"method": "POST", "url": resource["resourceType"]},
            }
            for full_url, resource in entries
        ],
    }


async def _anaemia_alert(db: asyncpg.Connection, subject: str) -> list[str]:
    return await eventually(
        lambda: stored_payloads(db, subject, RAISED), timeout=60, what="the anaemia alert"
    )


async def test_a_transaction_whose_lab_panel_groups_its_results_by_has_member_is_accepted(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """Sent: a transaction Bundle as a laboratory system writes a CBC: the Patient
    (urn:uuid fullUrl, study identifier), a haemoglobin Observation of 7.0 g/dL, and
    the panel Observation (LOINC 58410-2) that groups it with ``hasMember`` and, being
    a grouping, carries no value[x].

    Came back: 422 for the whole Bundle, "value[x] must be Quantity, CodeableConcept,
    string or integer" naming the panel entry; the haemoglobin of 7.0 was not recorded
    and no alert was raised.

    Should: FHIR R4 Observation, section 8.1.3.3 (Observation grouping): a panel is an
    Observation with ``hasMember`` whose value[x] is absent; obs-6 allows value[x] to be
    absent, and US Core's Laboratory Result Observation (us-core-2) requires a value
    only when there is no component or hasMember. The panel is a valid Observation
    that Vigil need not judge: the transaction must be accepted with the haemoglobin
    recorded and judged (anaemia alert), the panel received (kept, or answered as
    received but not used)."""
    subject = new_subject_id("FP")
    patient, haemoglobin, panel = _urn(), _urn(), _urn()
    bundle = _transaction(
        (patient, _patient(subject)),
        (haemoglobin, _haemoglobin(patient)),
        (panel, _observation(patient, "58410-2", hasMember=[{"reference": haemoglobin}])),
    )
    answer = await _post(services, "/fhir/r4", bundle)
    assert answer.status_code == 200, answer.text
    await _anaemia_alert(db, subject)


async def test_a_transaction_carrying_a_blood_pressure_with_components_is_accepted(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """Sent: a transaction Bundle from an EHR visit: the Patient, a haemoglobin of
    7.0 g/dL, and the visit's blood pressure as FHIR's vital-signs profile writes it
    (LOINC 85354-9 with systolic 8480-6 and diastolic 8462-4 as ``component``s and no
    value[x]).

    Came back: 422 for the whole Bundle ("value[x] must be Quantity, ..." at the blood
    pressure entry); the haemoglobin was lost.

    Should: FHIR R4 vital signs profile (observation-vitalsigns, section 8.1.3.4 of
    Observation; the bp profile) requires blood pressure as components with no
    value[x]; it is a valid Observation. A receiver that does not judge vital signs
    keeps it (or answers it received, not used, as README promises for resources Vigil
    does not judge); it must not refuse the transaction and lose the laboratory result
    beside it."""
    subject = new_subject_id("FV")
    patient = _urn()
    pressure = _observation(
        patient,
        "85354-9",
        category=[{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs"}]}],
        component=[
            {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
             "valueQuantity": {"value": 128, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
            {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
             "valueQuantity": {"value": 82, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
        ],
    )  # fmt: skip
    bundle = _transaction(
        (patient, _patient(subject)), (_urn(), _haemoglobin(patient)), (_urn(), pressure)
    )
    answer = await _post(services, "/fhir/r4", bundle)
    assert answer.status_code == 200, answer.text
    await _anaemia_alert(db, subject)


async def test_an_observation_with_data_absent_reason_flagged_critical_low_is_kept_and_raised(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """Sent: POST /fhir/r4/Observation, a haemoglobin whose value the laboratory could
    not report (``dataAbsentReason`` error, no value[x]) but which it interprets as
    critically low (``interpretation`` LL).

    Came back: 422 "value[x] must be Quantity, CodeableConcept, string or integer":
    the laboratory's critical-low flag reached nobody.

    Should: FHIR R4 Observation invariant obs-6 ("dataAbsentReason SHALL only be
    present if Observation.value[x] is not present") makes this a valid Observation:
    a result whose value is absent for a stated reason. It is HL7's empty OBX-5 with
    flags (issue 14, item 4): accepted, kept as an unreadable result, and since the
    sender's interpretation says abnormal, raised as ``abnormal-result-unreadable`` for
    the medical monitor."""
    subject = new_subject_id("FD")
    resource = _observation(
        f"Patient/{subject}",
        dataAbsentReason={"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
            "code": "error"}]},
        interpretation=[{"coding": [{"system": INTERPRETATION, "code": "LL"}]}],
    )  # fmt: skip
    answer = await _post(services, "/fhir/r4/Observation", resource)
    assert answer.status_code in (200, 201), answer.text

    async def raised() -> list[dict[str, Any]] | None:
        issues = [json.loads(p) for p in await stored_payloads(db, subject, DATA_QUALITY)]
        found = [i for i in issues if i.get("issue") == "abnormal-result-unreadable"]
        return found or None

    await eventually(raised, timeout=60, what="abnormal-result-unreadable raised")


async def test_a_haemoglobin_sent_as_value_string_is_judged_or_raised_never_dropped(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """Sent: POST /fhir/r4/Observation, haemoglobin (718-7) with ``valueString`` "7.0"
    and interpretation L, as EHRs that relay a laboratory's text results write it.

    Came back: 201; the result is stored with value_text "7.0", no value and no unit;
    no alert and no data-quality issue (only "unknown-subject"): a haemoglobin of 7.0
    g/dL, below the study's threshold of 9, was dropped without a word.

    Should: issue 14 item 3 and README ("Numbers are read wherever a lab puts them";
    the same value sent over HL7 as OBX-2 ST "7.0" is read as 7 and alerts): a numeric
    analyte whose string is a plain number is either read and judged (it has no unit,
    so this means the unit problem is raised) or raised as a data-quality issue for
    review. FHIR R4 Observation 8.1.3.2 allows valueString; it does not allow the
    receiver to lose a clinically significant value silently."""
    subject = new_subject_id("FS")
    resource = _observation(
        f"Patient/{subject}",
        valueString="7.0",
        interpretation=[{"coding": [{"system": INTERPRETATION, "code": "L"}]}],
    )
    answer = await _post(services, "/fhir/r4/Observation", resource)
    assert answer.status_code == 201, answer.text

    async def told() -> list[str] | None:
        alerts = await stored_payloads(db, subject, RAISED)
        issues = [
            json.loads(p)
            for p in await stored_payloads(db, subject, DATA_QUALITY)
            if json.loads(p).get("issue") != "unknown-subject"
        ]
        return (alerts or [json.dumps(i) for i in issues]) or None

    await eventually(told, timeout=45, what="an alert or a data-quality issue for Hb '7.0'")


async def test_a_gzip_encoded_body_is_read_or_refused_as_an_unsupported_encoding(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """Sent: POST /fhir/r4/Observation, a valid haemoglobin of 7.0 g/dL with
    ``Content-Encoding: gzip`` (what HTTP client libraries of integration engines send
    for large bodies).

    Came back: 400 "the body is not valid JSON": the compressed bytes were parsed as
    JSON. (A body labelled ``Content-Encoding: br`` that is not compressed at all is
    accepted: the header is ignored.)

    Should: RFC 9110 section 8.4 (Content-Encoding: the coding must be decoded to
    obtain the representation) and 15.5.16 (415 Unsupported Media Type covers an
    unsupported Content-Encoding, answered with Accept-Encoding): decode gzip and
    record the result, or answer 415; never blame the sender's JSON."""
    subject = new_subject_id("FZ")
    body = gzip.compress(json.dumps(_haemoglobin(f"Patient/{subject}")).encode())
    answer = await _send(
        services, "POST", "/fhir/r4/Observation", body, {"content-encoding": "gzip"}
    )
    assert answer.status_code in (201, 415), answer.text
    if answer.status_code == 201:
        await _anaemia_alert(db, subject)


async def test_put_and_delete_of_an_observation_are_answered_by_method_not_as_not_found(
    services: RunningServices,
) -> None:
    """Sent: ``PUT /fhir/r4/Observation/<id>`` with that Observation (a laboratory's
    update, the same interaction README accepts as a Bundle entry) and
    ``DELETE /fhir/r4/Observation/<id>``.

    Came back: 404 for both, with a problem+json body ("Not Found"), as if Vigil had no
    Observation endpoint at all.

    Should: FHIR R4 RESTful API: 404 means "resource type not supported, or not a FHIR
    end-point" (3.1.0.4.2/3.1.0.7.2), and Observation is supported; a batch entry is
    processed as its own interaction (3.1.0.11.2), so PUT Observation/<id> taken in a
    Bundle is taken alone too, or refused with 405; for delete, "If the server refuses
    to delete resources of that type on principle, then it should return the status
    code 405 Method Not Allowed" (3.1.0.7.1). Errors come as an OperationOutcome
    (3.1.0.1.11)."""
    subject = new_subject_id("FU")
    resource = _haemoglobin(f"Patient/{subject}")
    resource["id"] = f"lab{uuid.uuid4().hex[:12]}"
    path = f"/fhir/r4/Observation/{resource['id']}"
    put = await _send(services, "PUT", path, json.dumps(resource).encode())
    delete = await _send(services, "DELETE", path, b"")
    assert put.status_code in (200, 201, 405), put.text
    assert delete.status_code == 405, delete.text
    for answer in (put, delete):
        if answer.status_code >= 400:
            assert answer.json().get("resourceType") == "OperationOutcome", answer.text


async def test_the_capability_statement_is_served_at_metadata(services: RunningServices) -> None:
    """Sent: ``GET /fhir/r4/metadata`` (what an interface engine's FHIR connector asks
    first, to learn the server's FHIR version and what it takes).

    Came back: 404 ``{"detail": "Not Found"}``.

    Should: FHIR R4 RESTful API 3.1.0.14 (capabilities): ``GET [base]/metadata``
    returns the server's CapabilityStatement; every FHIR server publishes one
    (CapabilityStatement, 6.1.0: fhirVersion 4.0.1, the resources and interactions it
    supports: create of Observation, Patient, AdverseEvent; batch and transaction)."""
    async with httpx.AsyncClient(base_url=services.ingest_url, timeout=30) as client:
        answer = await client.get(
            "/fhir/r4/metadata", headers={**services.headers, "accept": FHIR_JSON}
        )
    assert answer.status_code == 200, answer.text
    statement = answer.json()
    assert statement.get("resourceType") == "CapabilityStatement", statement
    assert str(statement.get("fhirVersion", "")).startswith("4.0"), statement


async def test_an_ana_titre_sent_as_value_ratio_is_kept_and_its_high_flag_raised(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """Sent: POST /fhir/r4/Observation, an antinuclear antibody titre (LOINC 5048-4,
    the lupus study's own marker) as laboratories write titres in FHIR: ``valueRatio``
    1:640, interpretation H.

    Came back: 422 "value[x] must be Quantity, CodeableConcept, string or integer":
    the high titre reached nobody. (The same titre over HL7, OBX-2 SN ``^1^:^640``
    with flag H, is AA, kept as unreadable and raised to the medical monitor.)

    Should: FHIR R4 Observation.value[x] allows Ratio (and Range, boolean, time,
    dateTime, Period, SampledData); a titre is a Ratio. A receiver that cannot judge
    a Ratio still takes the valid Observation and keeps it for review, and since the
    laboratory flags it high, raises ``abnormal-result-unreadable`` (issue 14 item 4,
    README "Unreadable results"), as it does for the HL7 form."""
    subject = new_subject_id("FR")
    resource = _observation(
        f"Patient/{subject}",
        "5048-4",
        valueRatio={"numerator": {"value": 1}, "denominator": {"value": 640}},
        interpretation=[{"coding": [{"system": INTERPRETATION, "code": "H"}]}],
    )
    answer = await _post(services, "/fhir/r4/Observation", resource)
    assert answer.status_code in (200, 201), answer.text

    async def raised() -> list[dict[str, Any]] | None:
        issues = [json.loads(p) for p in await stored_payloads(db, subject, DATA_QUALITY)]
        found = [i for i in issues if i.get("issue") == "abnormal-result-unreadable"]
        return found or None

    await eventually(raised, timeout=60, what="abnormal-result-unreadable raised")


async def test_a_quantity_with_comparator_greater_than_is_not_judged_as_its_number(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """Sent: POST /fhir/r4/Observation, haemoglobin ``valueQuantity`` {value 7.0,
    comparator ">", g/dL}: the laboratory says only that it is above 7.0.

    Came back: 201, stored as 7 with comparator ">", and the anaemia alert "at or
    below 9 g/dL" raised and e-mailed as "Value: 7 g/dL", CTCAE grade 2.

    Should: FHIR R4 Quantity.comparator: "How the value should be understood and
    represented - whether the actual value is greater or less than the stated value
    due to measurement issues; e.g. if the comparator is '<', then the real value is
    < stated value". A value above 7 does not meet "at or below 9": no threshold
    alert (or a data-quality issue asking for the value), never a grade 2 anaemia."""
    subject = new_subject_id("FG")
    resource = _haemoglobin(f"Patient/{subject}")
    resource["valueQuantity"]["comparator"] = ">"
    answer = await _post(services, "/fhir/r4/Observation", resource)
    assert answer.status_code == 201, answer.text
    await eventually(
        lambda: stored_payloads(db, subject, LAB_RESULT), timeout=60, what="the result stored"
    )
    await asyncio.sleep(8)  # the rules judge it
    raised = [json.loads(p) for p in await stored_payloads(db, subject, RAISED)]
    assert raised == [], f"a '> 7.0 g/dL' haemoglobin raised {[r.get('rule_id') for r in raised]}"
