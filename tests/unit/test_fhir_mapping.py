"""FHIR R4 Observation and Patient to Vigil events."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from services.ingest.domain.fhir_adverse_events import adverse_event_event
from services.ingest.domain.fhir_issues import operation_outcome
from services.ingest.domain.fhir_mapping import observation_event, patient_event
from shared.events import AdverseEventReported, LabResultReported, ResultStatus, SubjectEnrolled


def observation(**changes: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "obs-1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7", "display": "Hb"}]},
        "subject": {"reference": "Patient/01-003"},
        "effectiveDateTime": "2026-11-20T08:00:00+08:00",
        "valueQuantity": {
            "value": 84,
            "unit": "g/L",
            "system": "http://unitsofmeasure.org",
            "code": "g/L",
        },
        "referenceRange": [{"low": {"value": 120}, "high": {"value": 160}}],
        "interpretation": [{"coding": [{"code": "L"}]}],
    }
    resource.update(changes)
    return resource


def test_quantity_observation() -> None:
    event, issues = observation_event(observation(), study_id="S", zone=UTC)
    assert issues == []
    assert isinstance(event, LabResultReported)
    assert (event.subject_id, event.loinc_code, event.value, event.unit) == (
        "01-003",
        "718-7",
        Decimal(84),
        "g/L",
    )
    assert event.collected_at == datetime(2026, 11, 20, 8, tzinfo=timezone(timedelta(hours=8)))
    assert (event.reference_low, event.reference_high) == (Decimal(120), Decimal(160))
    assert event.abnormal_flags == ("L",)
    assert event.source_message_id == "fhir:Observation/obs-1"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("amended", ResultStatus.CORRECTED),
        ("corrected", ResultStatus.CORRECTED),
        ("preliminary", ResultStatus.PRELIMINARY),
        ("registered", ResultStatus.PRELIMINARY),
        ("final", ResultStatus.FINAL),
        ("cancelled", ResultStatus.CANNOT_OBTAIN),
        ("entered-in-error", ResultStatus.WRONG),
        ("unknown", ResultStatus.PRELIMINARY),  # judged, and replaced by any later report
    ],
)
def test_status(status: str, expected: ResultStatus) -> None:
    event, _ = observation_event(observation(status=status), study_id="S", zone=UTC)
    assert isinstance(event, LabResultReported)
    assert event.result_status == expected


def test_an_observation_named_by_nothing_but_its_full_url_is_the_subject_test_and_time() -> None:
    """A transaction entry may carry neither identifier nor id (its urn:uuid fullUrl is new
    on every resend): the observation is then its subject, test and collection instant,
    so a resend or a correction names it again and a serial sample is another."""
    anonymous = observation()
    del anonymous["id"]
    event, issues = observation_event(anonymous, study_id="S", zone=UTC)
    assert issues == []
    assert isinstance(event, LabResultReported)
    same, _ = observation_event(dict(anonymous, status="corrected"), study_id="S", zone=UTC)
    later, _ = observation_event(
        dict(anonymous, effectiveDateTime="2026-11-20T10:00:00+08:00"), study_id="S", zone=UTC
    )
    assert isinstance(same, LabResultReported)
    assert isinstance(later, LabResultReported)
    assert same.identity == event.identity != later.identity
    assert "2026-11-20T00:00:00+00:00" in event.identity  # the instant, in UTC


def test_coded_value_is_qualitative() -> None:
    resource = observation(
        code={"coding": [{"system": "http://loinc.org", "code": "7918-6"}]},
        valueCodeableConcept={
            "coding": [
                {"system": "http://snomed.info/sct", "code": "260385009", "display": "Negative"}
            ]
        },
    )
    del resource["valueQuantity"]
    event, issues = observation_event(resource, study_id="S", zone=UTC)
    assert issues == []
    assert isinstance(event, LabResultReported)
    assert (event.qualitative, event.value_text) == ("negative", "Negative")


def test_censored_quantity() -> None:
    resource = observation(valueQuantity={"value": 0.5, "comparator": "<", "unit": "g/dL"})
    event, _ = observation_event(resource, study_id="S", zone=UTC)
    assert isinstance(event, LabResultReported)
    assert (event.comparator, event.value) == ("<", Decimal("0.5"))


def test_problems_carry_the_path_of_each_issue() -> None:
    resource = observation(status="bogus", subject={"display": "someone"})
    del resource["effectiveDateTime"]
    event, issues = observation_event(resource, study_id="S", zone=UTC)
    assert event is None
    assert {i.expression for i in issues} == {
        "Observation.status",
        "Observation.subject",
        "Observation.effective[x]",
    }
    outcome = operation_outcome(issues)
    assert outcome["resourceType"] == "OperationOutcome"
    assert all(issue["severity"] == "error" for issue in outcome["issue"])


def test_malformed_resource_is_a_structure_issue() -> None:
    resource = observation(valueQuantity={"value": "lots", "unit": "g/L"})
    event, issues = observation_event(resource, study_id="S", zone=UTC)
    assert event is None
    assert issues[0].code == "structure"
    assert issues[0].expression == "Observation.valueQuantity.value"


def test_patient_registers_a_subject_without_keeping_the_name() -> None:
    resource = {
        "resourceType": "Patient",
        "identifier": [
            {
                "system": "urn:oid:2.16.840.1.113883.19.5",
                "value": "MRN-77431",
                "type": {"text": "MR"},
            },
            {"system": "urn:vigil:study:NCT05262686", "value": "02-015"},
        ],
        "name": [{"family": "Doe", "given": ["Jane"]}],
        "gender": "female",
        "birthDate": "1984-07-09",
        "managingOrganization": {"reference": "Organization/PKUPH-02"},
    }
    event, issues = patient_event(resource, study_id="NCT05262686")
    assert issues == []
    assert isinstance(event, SubjectEnrolled)
    assert (event.subject_id, event.site_id, event.sex.value, event.birth_date) == (
        "02-015",
        "PKUPH-02",
        "F",
        date(1984, 7, 9),
    )
    assert "Doe" not in event.model_dump_json()
    assert "MRN-77431" not in event.model_dump_json()


def adverse_event(**changes: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "AdverseEvent",
        "identifier": {"value": "AE-77"},
        "actuality": "actual",
        "event": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/mdr",
                    "code": "10035664",
                    "display": "Pneumonia",
                }
            ]
        },
        "subject": {"reference": "Patient/01-003"},
        "date": "2026-10-02T09:00:00+08:00",
        "seriousness": {"coding": [{"code": "serious"}]},
        "severity": {"coding": [{"code": "severe"}]},
        "outcome": {"coding": [{"code": "recovering"}]},
    }
    resource.update(changes)
    return resource


def test_adverse_event() -> None:
    event, issues = adverse_event_event(adverse_event(), study_id="S", zone=UTC)
    assert issues == []
    assert isinstance(event, AdverseEventReported)
    assert (event.ae_id, event.term, event.meddra_code, event.serious) == (
        "AE-77",
        "Pneumonia",
        "10035664",
        True,
    )
    assert (event.severity, event.outcome) == ("severe", "recovering")


def test_potential_adverse_event_is_not_recorded_as_one() -> None:
    event, issues = adverse_event_event(
        adverse_event(actuality="potential"), study_id="S", zone=UTC
    )
    assert event is None
    assert issues[0].expression == "AdverseEvent.actuality"
