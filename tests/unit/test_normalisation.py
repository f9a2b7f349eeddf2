"""Normalisation of lab results: canonical units, qualitative answers, unmapped analytes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from services.ingest.adapters.study_files import load_code_map
from services.ingest.domain.json_events import events_for
from shared.analytes import normalise_lab_result
from shared.events import DataQualityIssueRaised, LabResultReported
from shared.qualitative import qualitative_answer
from tests.support.services import REPO


def result(**changes: Any) -> LabResultReported:
    fields: dict[str, Any] = {
        "study_id": "NCT05262686",
        "subject_id": "01-001",
        "loinc_code": "718-7",
        "value": Decimal("84"),
        "unit": "g/L",
        "collected_at": datetime(2026, 6, 1, 9, tzinfo=UTC),
        "source_message_id": "M1",
    }
    fields.update(changes)
    return LabResultReported.model_validate(fields)


def test_canonical_value_beside_the_reported_one() -> None:
    normalised, problem = normalise_lab_result(result())
    assert problem is None
    assert (normalised.value, normalised.unit) == (Decimal(84), "g/L")
    assert (normalised.canonical_value, normalised.canonical_unit) == (Decimal("8.4"), "g/dL")


def test_unknown_analyte_is_kept_and_marked_unmapped() -> None:
    normalised, problem = normalise_lab_result(result(loinc_code="2345-7", unit="mg/dL"))
    assert problem is None
    assert normalised.unmapped is True
    assert normalised.canonical_value is None


def test_known_analyte_in_an_unconvertible_unit_is_kept_with_a_problem() -> None:
    normalised, problem = normalise_lab_result(result(unit="%"))
    assert normalised.value == Decimal(84)
    assert normalised.canonical_value is None
    assert problem is not None
    assert "haemoglobin" in problem


def test_events_for_an_unconvertible_unit_add_a_data_quality_issue() -> None:
    lab, issue = events_for(result(unit="%"), source="/t", correlation_id=uuid.uuid4(), now=None)
    payload = issue.payload()
    assert isinstance(payload, DataQualityIssueRaised)
    assert payload.issue == "unit-not-convertible"
    assert payload.related_event_id == lab.id
    assert issue.causation_id == lab.id


@pytest.mark.parametrize(
    ("text", "flags", "kind"),
    [
        ("7,0", ("L",), "abnormal-result-unreadable"),
        ("7.0 g/dL", ("LL",), "abnormal-result-unreadable"),
        ("see comment", (), "result-unreadable"),
        ("haemolysed", ("N",), "result-unreadable"),
    ],
)
def test_an_analyte_judged_by_its_number_sent_as_text_is_an_unreadable_result(
    text: str, flags: tuple[str, ...], kind: str
) -> None:
    """Rules judge a haemoglobin by its number: one sent as text they cannot read is
    never stored as text with nobody told (never silent); the issue names the analyte and
    what to do, never the text."""
    sent = result(value=None, unit="g/dL", value_text=text, abnormal_flags=flags)
    lab, issue = events_for(sent, source="/t", correlation_id=uuid.uuid4(), now=None)
    payload = issue.payload()
    assert isinstance(payload, DataQualityIssueRaised)
    assert (payload.issue, payload.related_event_id) == (kind, lab.id)
    assert "haemoglobin (718-7) was reported as text" in payload.detail
    assert text not in payload.detail


def test_a_withdrawn_result_of_such_an_analyte_needs_no_number() -> None:
    withdrawn = result(value=None, unit=None, result_status="X")
    (lab,) = events_for(withdrawn, source="/t", correlation_id=uuid.uuid4(), now=None)
    assert isinstance(lab.payload(), LabResultReported)


def test_events_for_text_map_to_a_qualitative_answer() -> None:
    text_result = result(loinc_code="7918-6", value=None, unit=None, value_text="Non-reactive")
    (lab,) = events_for(text_result, source="/t", correlation_id=uuid.uuid4(), now=None)
    payload = lab.payload()
    assert isinstance(payload, LabResultReported)
    assert payload.qualitative == "negative"
    assert payload.value_text == "Non-reactive"


@pytest.mark.parametrize(
    ("spellings", "answer"),
    [
        (("POS",), "positive"),
        (("Repeatedly reactive",), "positive"),
        (("LA11883-8", "whatever"), "negative"),
        (("", "Not  detected"), "negative"),
        (("Borderline",), "indeterminate"),
        (("42425007",), "indeterminate"),
        (("1:40",), None),
    ],
)
def test_qualitative_vocabulary(spellings: tuple[str, ...], answer: str | None) -> None:
    assert qualitative_answer(*spellings) == answer


def test_result_needs_a_code_and_a_value() -> None:
    with pytest.raises(ValidationError, match="loinc_code or a local_code"):
        result(loinc_code=None)
    with pytest.raises(ValidationError, match="needs a value"):
        result(value=None, unit=None)
    assert result(value=None, unit=None, result_status="X").value is None


def test_the_study_code_map_loads() -> None:
    table = load_code_map(REPO / "studies", "NCT05262686")
    assert table["L|HGB"] == "718-7"
    assert load_code_map(REPO / "studies", "NO-SUCH-STUDY") == {}
