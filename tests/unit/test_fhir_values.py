"""FHIR R4 Observation.value[x] in each of its forms, and Observations without one."""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal
from typing import Any

import pytest

from services.ingest.domain.fhir_entries import read_entry
from services.ingest.domain.fhir_mapping import observation_event
from services.ingest.domain.fhir_values import GROUPING, PENDING, unused_observation
from shared.events import LabResultReported, LabResultUnreadable, ResultStatus
from tests.unit.test_fhir_mapping import observation

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def without_value(**changes: Any) -> dict[str, Any]:
    resource = observation(**changes)
    del resource["valueQuantity"]
    return resource


def read(resource: dict[str, Any]) -> LabResultReported | LabResultUnreadable:
    event, issues = observation_event(resource, study_id="S", zone=UTC)
    assert issues == []
    assert isinstance(event, LabResultReported | LabResultUnreadable)
    return event


@pytest.mark.parametrize(
    ("text", "value", "comparator"),
    [("7.0", "7.0", None), ("<0.5", "0.5", "<"), ("≥ 60", "60", ">=")],
)
def test_a_value_string_that_is_a_number_is_read_as_one(
    text: str, value: str, comparator: str | None
) -> None:
    event = read(without_value(valueString=text))
    assert isinstance(event, LabResultReported)
    assert (event.value, event.comparator, event.unit) == (Decimal(value), comparator, None)
    assert event.value_text == text


def test_a_value_string_in_words_is_kept_as_text_with_its_answer() -> None:
    event = read(without_value(valueString="Positive"))
    assert isinstance(event, LabResultReported)
    assert (event.value, event.value_text, event.qualitative) == (None, "Positive", "positive")


@pytest.mark.parametrize(
    ("element", "value"),
    [
        ("valueRatio", {"numerator": {"value": 1}, "denominator": {"value": 640}}),
        ("valueRange", {"low": {"value": 1}, "high": {"value": 2}}),
        ("valuePeriod", {"start": "2026-11-20"}),
        ("valueBoolean", True),
        (
            "valueSampledData",
            {"origin": {"value": 0}, "period": 10, "dimensions": 1, "data": "1 2"},
        ),
    ],
)
def test_a_value_vigil_does_not_judge_is_kept_unreadable_with_its_flags(
    element: str, value: Any
) -> None:
    event = read(without_value(**{element: value}, interpretation=[{"coding": [{"code": "H"}]}]))
    assert isinstance(event, LabResultUnreadable)
    assert (event.segment, event.field) == ("Observation", "Observation.value[x]")
    assert event.flagged_abnormal
    assert (event.loinc_code, event.subject_id, event.result_status) == (
        "718-7",
        "01-003",
        ResultStatus.FINAL,
    )
    assert event.source_message_id == "fhir:Observation/obs-1"
    assert "640" not in event.problem


@pytest.mark.parametrize(
    ("element", "value"), [("valueDateTime", "2026-11-19"), ("valueTime", "08:30:00")]
)
def test_a_date_or_time_is_kept_as_its_text_as_hl7_dt_and_tm_are(element: str, value: str) -> None:
    event = read(without_value(**{element: value}))
    assert isinstance(event, LabResultReported)
    assert event.value_text == value


def test_an_absent_value_with_a_reason_is_kept_unreadable_naming_the_reason() -> None:
    reason = {"coding": [{"code": "error"}]}
    event = read(
        without_value(dataAbsentReason=reason, interpretation=[{"coding": [{"code": "LL"}]}])
    )
    assert isinstance(event, LabResultUnreadable)
    assert "dataAbsentReason (error)" in event.problem
    assert event.abnormal_flags == ("LL",)
    assert event.flagged_abnormal


def test_an_absent_value_without_a_reason_is_kept_unreadable() -> None:
    event = read(without_value())
    assert isinstance(event, LabResultUnreadable)
    assert "no dataAbsentReason" in event.problem


def test_a_quantity_without_a_number_is_kept_unreadable() -> None:
    event = read(observation(valueQuantity={"unit": "g/L", "system": UCUM, "code": "g/L"}))
    assert isinstance(event, LabResultUnreadable)


@pytest.mark.parametrize("status", ["cancelled", "entered-in-error"])
def test_a_cancelled_or_erroneous_result_keeps_no_value(status: str) -> None:
    event = read(observation(status=status))
    assert isinstance(event, LabResultReported)
    assert (event.value, event.unit, event.value_text) == (None, None, None)


def _component(code: str, value: float) -> dict[str, Any]:
    return {
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "valueQuantity": {"value": value, "system": UCUM, "code": "mm[Hg]"},
    }


def test_a_panel_or_a_blood_pressure_is_received_not_used() -> None:
    panel = without_value(
        code={"coding": [{"system": LOINC, "code": "58410-2"}]},
        hasMember=[{"reference": "urn:uuid:1"}],
    )
    pressure = without_value(
        code={"coding": [{"system": LOINC, "code": "85354-9"}]},
        component=[_component("8480-6", 128), _component("8462-4", 82)],
    )
    assert unused_observation(panel) == GROUPING
    assert unused_observation(pressure) == GROUPING
    panel_entry = {"resource": panel}
    assert read_entry(panel_entry, 0, lambda resource: (None, [])).unused == GROUPING


def test_a_cancelled_grouping_is_read_it_withdraws_what_it_reported() -> None:
    pressure = without_value(
        status="cancelled",
        code={"coding": [{"system": LOINC, "code": "85354-9"}]},
        component=[_component("8480-6", 128)],
    )
    assert unused_observation(pressure) is None
    event = read(pressure)
    assert isinstance(event, LabResultReported)
    assert event.result_status == ResultStatus.CANNOT_OBTAIN


def test_a_grouping_coded_as_an_analyte_vigil_judges_is_kept_unreadable() -> None:
    grouping = without_value(hasMember=[{"reference": "urn:uuid:1"}])  # coded 718-7
    assert unused_observation(grouping) is None
    assert isinstance(read(grouping), LabResultUnreadable)


def test_only_registered_observations_and_groupings_without_a_value_are_not_used() -> None:
    assert unused_observation(without_value(status="registered")) == PENDING
    assert unused_observation(observation(status="registered")) is None
    assert unused_observation(observation()) is None
    assert unused_observation(without_value()) is None
    reason = {"coding": [{"code": "error"}]}
    panel = without_value(
        code={"coding": [{"system": LOINC, "code": "58410-2"}]},
        hasMember=[{}],
        dataAbsentReason=reason,
    )
    assert unused_observation(panel) is None


def test_a_component_vigil_judges_is_never_left_unread() -> None:
    resource = without_value(
        code={"coding": [{"system": LOINC, "code": "58410-2"}]},
        component=[_component("718-7", 7)],
    )
    assert unused_observation(resource) is None
    event = read(resource)
    assert isinstance(event, LabResultUnreadable)
    assert "component" in event.problem


def test_a_bundle_entry_kept_unreadable_names_its_entry() -> None:
    entry = {"resource": without_value(valueRatio={"numerator": {"value": 1}})}
    outcome = read_entry(
        entry, 4, lambda resource: observation_event(resource, study_id="S", zone=UTC)
    )
    assert isinstance(outcome.event, LabResultUnreadable)
    assert outcome.event.segment == "Bundle.entry[4]"


def test_a_resource_type_that_is_no_string_is_refused_naming_it() -> None:
    outcome = read_entry({"resource": {"resourceType": []}}, 2, lambda resource: (None, []))
    assert outcome.refusal is not None
    assert outcome.refusal.issues[0].expression == "Bundle.entry[2].resource.resourceType"


@pytest.mark.parametrize(
    "status", [[], {}, 5, ["final"]], ids=["list", "object", "number", "list-of-code"]
)
def test_a_status_that_is_no_code_is_an_issue_naming_the_field_not_a_crash(status: Any) -> None:
    # found by the ingest fuzz test: ``"status": []`` reached a set lookup and answered 500
    resource = observation(status=status)
    assert unused_observation(resource) is None
    assert unused_observation({**without_value(), "status": status}) is None
    event, issues = observation_event(resource, study_id="S", zone=UTC)
    assert event is None
    assert issues, "an Observation whose status is no code must be refused"
    assert all("status" in str(issue) for issue in issues), issues
