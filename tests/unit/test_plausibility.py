"""Values, times and reference ranges that cannot be right (shared/plausibility.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from services.ingest.domain.fhir_entries import created
from services.ingest.domain.json_events import events_for
from shared.analytes import ANALYTES
from shared.events import DataQualityIssueRaised, LabResultReported
from shared.plausibility import (
    PLAUSIBLE,
    collected_before_birth,
    implausible_value,
    implausible_weight,
    unusable_reference_range,
)


def result(**changes: Any) -> LabResultReported:
    fields: dict[str, Any] = {
        "study_id": "NCT05262686",
        "subject_id": "01-001",
        "loinc_code": "718-7",
        "value": Decimal("8.4"),
        "unit": "g/dL",
        "collected_at": datetime(2026, 6, 1, 9, tzinfo=UTC),
        "source_message_id": "M1",
    }
    fields.update(changes)
    return LabResultReported.model_validate(fields)


def test_every_quantitative_analyte_has_a_cited_plausible_range() -> None:
    quantitative = {analyte.name for analyte in ANALYTES if analyte.scale == "Qn"}
    assert quantitative - set(PLAUSIBLE) == set()
    assert set(PLAUSIBLE) - {analyte.name for analyte in ANALYTES} == set()
    for name, bounds in PLAUSIBLE.items():
        assert bounds.low < bounds.high, name
        assert bounds.low >= 0, name
        assert len(bounds.source) > 20, name


@pytest.mark.parametrize(
    ("changes", "side"),
    [
        ({"value": Decimal(-3)}, "below"),
        ({"value": Decimal(0)}, "below"),
        ({"value": Decimal("0.9")}, "below"),
        ({"value": Decimal(30)}, "above"),
        ({"value": Decimal(-30), "unit": "g/L"}, "below"),
        ({"value": Decimal(-1), "comparator": "<"}, "below"),
        ({"value": Decimal(0), "comparator": "<"}, "below"),
        ({"value": Decimal(25), "comparator": ">"}, "above"),
        ({"loinc_code": "777-3", "value": Decimal(10_000_000), "unit": "10*9/L"}, "above"),
        ({"loinc_code": "2160-0", "value": Decimal(0), "unit": "mg/dL"}, "below"),
        ({"loinc_code": "1742-6", "value": Decimal(-5), "unit": "U/L"}, "below"),
    ],
)
def test_impossible_values_are_named_with_the_plausible_range(
    changes: dict[str, Any], side: str
) -> None:
    problem = implausible_value(result(**changes))
    assert problem is not None
    assert f"{side} anything physiological" in problem
    assert problem.startswith(("haemoglobin (718-7)", "platelets", "creatinine", "ALT"))


@pytest.mark.parametrize(
    "changes",
    [
        {"value": Decimal("8.4")},
        {"value": Decimal(1)},  # the range's ends are plausible
        {"value": Decimal(25)},
        {"value": Decimal("3.1")},  # critical, not impossible: it must alert
        {"value": Decimal("0.1"), "comparator": "<"},  # a detection limit
        {"value": Decimal(24), "comparator": ">"},
        {"loinc_code": "777-3", "value": Decimal(0), "unit": "10*9/L"},
        {"loinc_code": "751-8", "value": Decimal(0), "unit": "10*9/L"},
        {"loinc_code": "2160-0", "value": Decimal("0.1"), "unit": "mg/dL"},
        {"value": Decimal(-3), "unit": "%"},  # not convertible: a unit problem, said apart
        {"loinc_code": "2345-7", "value": Decimal(-3), "unit": "mg/dL"},  # not catalogued
        {"value": None, "value_text": "see comment"},
    ],
)
def test_possible_values_are_not_called_impossible(changes: dict[str, Any]) -> None:
    assert implausible_value(result(**changes)) is None


def test_ingest_keeps_an_impossible_value_and_raises_one_issue() -> None:
    lab, issue = events_for(
        result(value=Decimal(-3)), source="/t", correlation_id=uuid.uuid4(), now=None
    )
    assert lab.payload().value == Decimal(-3)  # kept as sent
    payload = issue.payload()
    assert isinstance(payload, DataQualityIssueRaised)
    assert payload.issue == "implausible-value"
    assert payload.related_event_id == lab.id
    assert "haemoglobin (718-7)" in payload.detail


def test_ingest_raises_nothing_for_a_possible_value() -> None:
    assert len(events_for(result(), source="/t", correlation_id=uuid.uuid4(), now=None)) == 1


@pytest.mark.parametrize(
    ("value", "unit", "enrolment", "implausible"),
    [
        ("6.2", "kg", "80", True),  # 62 with a dropped digit
        ("620", "kg", "60", True),  # 62 with an extra digit
        ("62", "kg", "60", False),
        ("45", "kg", "80", False),  # a large real loss stays judged
        ("136.7", "[lb_av]", "60", False),  # 62 kg in pounds
        ("62", "kg", None, False),  # no enrolment weight: nothing to compare with
    ],
)
def test_a_body_weight_far_from_the_enrolment_weight_is_implausible(
    value: str, unit: str, enrolment: str | None, implausible: bool
) -> None:
    weight = result(loinc_code="29463-7", value=Decimal(value), unit=unit)
    detail = implausible_weight(weight, Decimal(enrolment) if enrolment else None)
    assert (detail is not None) == implausible
    if detail is not None:
        assert value not in detail  # names the analyte and the factor, never the value


def test_collected_before_birth_by_the_collection_date() -> None:
    born = date(1980, 6, 15)
    assert collected_before_birth(datetime(1980, 6, 14, 23, tzinfo=UTC), born)
    assert not collected_before_birth(datetime(1980, 6, 15, 0, tzinfo=UTC), born)


@pytest.mark.parametrize(
    ("low", "high", "unusable"),
    [
        ("40", "7", True),
        ("7", "40", False),
        ("7", "7", False),
        (None, "40", False),
        ("7", None, False),
    ],
)
def test_a_reference_range_with_low_above_high_is_unusable(
    low: str | None, high: str | None, unusable: bool
) -> None:
    as_decimal = [Decimal(v) if v is not None else None for v in (low, high)]
    assert unusable_reference_range(*as_decimal) is unusable


def test_a_fhir_bundle_entry_with_an_impossible_value_is_created_with_a_warning() -> None:
    response = created("Observation", uuid.uuid4(), result(value=Decimal(-3)))["response"]
    assert response["status"] == "201 Created"
    (issue,) = response["outcome"]["issue"]
    assert (issue["severity"], issue["expression"]) == ("warning", ["Observation.value[x]"])
    assert "outcome" not in created("Observation", uuid.uuid4(), result())["response"]
