"""Accepted means storable: every channel refuses, naming the field and never the value,
what the event store, the canonical JSON or the rules could not hold."""

from __future__ import annotations

import json
from datetime import UTC
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from services.ingest.domain.fhir_mapping import observation_event, patient_event
from services.ingest.domain.hl7.messages import interpret
from services.ingest.domain.json_requests import LabResultIn, SubjectIn
from shared.analytes import normalise_lab_result
from shared.events import (
    Envelope,
    LabResultReported,
    LabResultUnreadable,
    SubjectEnrolled,
    wrap,
)

STUDY = "NCT05262686"


def lab(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "study_id": STUDY,
        "subject_id": "01-003",
        "loinc_code": "718-7",
        "value": "8.6",
        "unit": "g/dL",
        "collected_at": "2026-06-25T09:00:00+00:00",
        "source_message_id": "LAB-1",
    }
    body.update(changes)
    return body


def refusal(model: type[Any], body: dict[str, Any]) -> tuple[str, str]:
    """The one field refused and the message, from JSON as a sender sends it."""
    with pytest.raises(ValidationError) as caught:
        model.model_validate_json(json.dumps(body))
    (error,) = caught.value.errors()
    return ".".join(str(part) for part in error["loc"]), error["msg"]


@pytest.mark.parametrize(
    "moment",
    [
        "9999-12-31T23:00:00-14:00",  # past year 9999 in UTC: Python cannot even shift it
        "0001-01-01T00:00:00+05:00",
        "1899-12-31T23:59:59+00:00",
        "2201-01-01T00:00:00+00:00",
    ],
)
@pytest.mark.parametrize("model", [LabResultIn, LabResultReported])
def test_a_collection_time_outside_1900_to_2200_is_refused_naming_the_field(
    model: type[Any], moment: str
) -> None:
    field, message = refusal(model, lab(collected_at=moment))
    assert field == "collected_at"
    assert "1900 to 2200" in message
    assert moment[:4] not in message


@pytest.mark.parametrize(
    "moment",
    ["2026-06-25T09:00:00+15:00", "2026-06-25T09:00:00-23:59"],
)
def test_a_utc_offset_postgresql_cannot_read_back_is_refused(moment: str) -> None:
    field, message = refusal(LabResultIn, lab(collected_at=moment))
    assert field == "collected_at"
    assert "UTC offset" in message


def test_the_first_and_last_clinical_years_are_accepted_with_any_offset() -> None:
    early = LabResultReported.model_validate(lab(collected_at="1900-01-01T00:00:00+14:00"))
    late = LabResultReported.model_validate(lab(collected_at="2200-12-31T23:59:59-14:00"))
    assert early.collected_at.astimezone(UTC).year == 1899
    assert late.collected_at.astimezone(UTC).year == 2201


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("1E+400", "digits"),  # a finite decimal whose double is infinite
        ("1E+16", "less than or equal to 1E+15"),
        ("-1E+16", "greater than or equal to -1E+15"),
        ("1E-400", "digits"),  # its double is 0: the value would be lost
        ("0.123456789012345678901234567890123", "digits"),
        ("1E-33", "digits"),
        ("NaN", "finite"),
        ("Infinity", "finite"),
        ("-Infinity", "finite"),
        ("sNaN", "finite"),
    ],
)
@pytest.mark.parametrize("field", ["value", "reference_low", "reference_high"])
def test_a_number_the_store_cannot_hold_is_refused_naming_the_field(
    field: str, value: str, why: str
) -> None:
    named, message = refusal(LabResultIn, lab(**{field: value}))
    assert named == field
    assert why in message
    assert value not in message


@pytest.mark.parametrize(
    "value", ["0", "-0", "1E+15", "-1E+15", "1E-32", "-9.9E-16", "1234567.8901234567", "12.50"]
)
def test_numbers_at_the_bounds_are_accepted_and_read_back_alike(value: str) -> None:
    result = LabResultReported.model_validate(lab(value=value))
    envelope = wrap(result, source="/tests")
    # what the rules parse from the record is what ingest accepted, to a double's precision
    again = Envelope.from_json(envelope.to_json()).payload()
    assert isinstance(again, LabResultReported)
    assert again.value is not None
    assert float(again.value) == float(Decimal(value))


def test_a_number_in_json_too_large_for_a_double_is_refused() -> None:
    raw = json.dumps(lab()).replace('"8.6"', "1e400")
    with pytest.raises(ValidationError) as caught:
        LabResultIn.model_validate_json(raw)
    assert [error["loc"] for error in caught.value.errors()] == [("value",)]


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("subject_id", "01 003"),
        ("subject_id", "01-003\n"),
        ("source_message_id", "LAB\r1"),
        ("unit", "g/dL\x00"),
        ("analyte_text", "Hb\x00"),
        ("value_text", "pos\x00itive"),
    ],
)
def test_identifiers_outside_their_grammar_and_nul_characters_are_refused(
    field: str, text: str
) -> None:
    named, message = refusal(LabResultIn, lab(**{field: text}))
    assert named == field
    assert text not in message


def test_free_text_may_span_lines() -> None:
    result = LabResultReported.model_validate(lab(analyte_text="Haemoglobin\n(venous)"))
    assert result.analyte_text == "Haemoglobin\n(venous)"


@pytest.mark.parametrize(("field", "value"), [("birth_date", "1850-01-01"), ("day0", "2300-01-01")])
@pytest.mark.parametrize("model", [SubjectIn, SubjectEnrolled])
def test_an_enrolment_date_outside_1900_to_2200_is_refused(
    model: type[Any], field: str, value: str
) -> None:
    body = {
        "study_id": STUDY,
        "subject_id": "01-003",
        "site_id": "PKUPH-01",
        "sex": "F",
        "birth_date": "1980-06-15",
        field: value,
    }
    assert refusal(model, body)[0] == field


def test_a_site_id_outside_the_identifier_grammar_is_refused() -> None:
    body = {"subject_id": "01-003", "site_id": "site 1", "sex": "F", "birth_date": "1980-06-15"}
    assert refusal(SubjectIn, body)[0] == "site_id"


def test_a_canonical_value_beyond_the_bounds_is_kept_as_reported_with_a_problem() -> None:
    # 1e15 ukat/L is a number Vigil holds; x 60 to U/L is not
    result = LabResultReported.model_validate(
        lab(loinc_code="1742-6", value="1E+15", unit="ukat/L")
    )
    normalised, problem = normalise_lab_result(result)
    assert normalised.canonical_value is None
    assert problem is not None
    assert "outside the numbers Vigil can hold" in problem


def test_a_canonical_value_keeps_fifteen_digits() -> None:
    result = LabResultReported.model_validate(lab(value="5.3", unit="mmol/L"))
    normalised, problem = normalise_lab_result(result)
    assert problem is None
    assert normalised.canonical_value == Decimal("8.54012246213342")  # 5.3 / 0.6206


def test_a_small_value_keeps_its_canonical_value() -> None:
    result = LabResultReported.model_validate(lab(value="0.0005", unit="mmol/L"))
    normalised, problem = normalise_lab_result(result)
    assert problem is None
    assert normalised.canonical_value == Decimal("0.000805671930389945")


def _oru(obx: str, pid: str = "PID|1||01-003^^^NCT05262686^SS||~||19850412|F") -> str:
    return "\r".join(
        [
            "MSH|^~\\&|LIS|PKUPH-LAB|VIGIL|SPONSOR|20261120083000||ORU^R01^ORU_R01|M1|P|2.5.1",
            pid,
            "OBR|1|ORD1|FIL1|58410-2^CBC^LN|||20261120080000",
            obx,
        ]
    )


@pytest.mark.parametrize(
    ("obx", "field", "value"),
    [
        ("OBX|1|NM|718-7^Hb^LN||8.4|g/dL|12-16|L|||F|||99991231230000-1400", 14, "9999"),
        ("OBX|1|NM|718-7^Hb^LN||1E+400|g/dL|12-16|L|||F", 5, "1E+400"),
        ("OBX|1|NM|718-7^Hb^LN||99999999999999999|g/dL|12-16|L|||F", 5, "9999999"),
        ("OBX|1|NM|718-7^Hb^LN||8.4|g/dL|12-16|L|||F|||20261120+2400", 14, "2400"),
    ],
)
def test_hl7_names_the_field_of_a_value_out_of_bounds_and_keeps_the_result_unreadable(
    obx: str, field: int, value: str
) -> None:
    """One OBX out of bounds fails alone (issue 14): AA, a W ERR naming its field, and
    the result kept as unreadable, without the value."""
    outcome = interpret(_oru(obx), study_id=STUDY, zone=UTC)
    assert outcome.ack_code == "AA"
    (problem,) = outcome.problems
    assert (problem.segment, problem.field, problem.severity) == ("OBX", field, "W")
    assert value not in problem.text
    (kept,) = outcome.events
    assert isinstance(kept, LabResultUnreadable)
    assert kept.field == f"OBX-{field}"
    assert value not in kept.problem


def test_hl7_birth_date_outside_the_clinical_years_answers_ae() -> None:
    adt = "\r".join(
        [
            "MSH|^~\\&|EDC|PKUPH|VIGIL|SPONSOR|20261120083000||ADT^A04|A1|P|2.5.1",
            "PID|1||01-003^^^NCT05262686^SS||~||18500412|F",
            "PV1|1|O|^^^PKUPH-01",
        ]
    )
    outcome = interpret(adt, study_id=STUDY, zone=UTC)
    assert outcome.ack_code == "AE"
    assert [(p.segment, p.field) for p in outcome.problems] == [("PID", 7)]


def test_fhir_observation_out_of_bounds_is_an_issue_naming_the_element() -> None:
    resource = {
        "resourceType": "Observation",
        "id": "obs-1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
        "subject": {"reference": "Patient/01-003"},
        "effectiveDateTime": "2026-11-20T08:00:00+08:00",
        "valueQuantity": {"value": 1e300, "unit": "g/L", "code": "g/L"},
    }
    event, issues = observation_event(resource, study_id=STUDY, zone=UTC)
    assert event is None
    assert [issue.expression for issue in issues] == ["Observation.value[x]"]
    assert "1e300" not in issues[0].diagnostics.lower()


def test_fhir_patient_born_before_1900_is_an_issue_not_a_crash() -> None:
    resource = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:vigil:study:NCT05262686", "value": "01-003"}],
        "birthDate": "1850-04-12",
        "gender": "female",
        "managingOrganization": {"reference": "Organization/PKUPH-01"},
    }
    event, issues = patient_event(resource, study_id=STUDY)
    assert event is None
    assert [issue.expression for issue in issues] == ["Patient.birthDate"]
