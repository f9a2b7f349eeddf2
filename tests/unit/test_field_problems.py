"""Validation errors become field problems that never quote the input."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.ingest.domain.json_requests import AdverseEventIn, LabResultIn, SubjectIn
from shared.field_problems import FieldProblem, describe, field_problems

NAME = "Quentin Marrowfield"
BIRTH = "1937-06-11"


def problems_of(model: type[BaseModel], document: dict[str, Any]) -> list[FieldProblem]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(document)
    return field_problems(caught.value)


def assert_value_free(problems: list[FieldProblem], *values: str) -> None:
    text = describe(problems) + " ".join(p.pointer for p in problems)
    for value in values:
        assert value.lower() not in text.lower(), text


def test_a_wrong_type_names_the_field_and_the_type_not_the_value() -> None:
    problems = problems_of(
        LabResultIn,
        {
            "subject_id": "01-003",
            "loinc_code": "718-7",
            "value": NAME,
            "unit": "g/dL",
            "collected_at": "2026-11-01T08:00:00Z",
            "source_message_id": "M1",
        },
    )
    assert [p.field for p in problems] == ["value"]
    assert problems[0].pointer == "/value"
    assert_value_free(problems, NAME)


def test_an_unknown_field_is_named_but_not_its_value() -> None:
    document = {
        "subject_id": "01-003",
        "site_id": "PKUPH-01",
        "sex": "F",
        "birth_date": "1980-01-01",
        "patient_name": NAME,
    }
    problems = problems_of(SubjectIn, document)
    assert [(p.field, p.kind) for p in problems] == [("patient_name", "extra_forbidden")]
    assert "not a field" in problems[0].problem
    assert_value_free(problems, NAME)


@pytest.mark.parametrize("key", ["Quentin_Marrowfield", "Quentin Marrowfield", "x" * 80])
def test_an_unknown_key_not_written_like_a_field_name_is_not_repeated(key: str) -> None:
    document = {"subject_id": "01-003", "site_id": "S", "sex": "F", "birth_date": "1980-01-01"}
    problems = problems_of(SubjectIn, {**document, key: NAME})
    assert [p.location for p in problems] == [("(key)",)]
    assert_value_free(problems, NAME, key)


def test_a_bad_date_names_the_field_not_the_date() -> None:
    problems = problems_of(
        SubjectIn,
        {"subject_id": "01-003", "site_id": "S", "sex": "F", "birth_date": f"{BIRTH}x"},
    )
    assert [p.field for p in problems] == ["birth_date"]
    assert_value_free(problems, BIRTH)


def test_a_subject_id_that_misfits_the_grammar_says_the_grammar_in_words() -> None:
    problems = problems_of(
        SubjectIn,
        {"subject_id": "MRN 4471", "site_id": "S", "sex": "F", "birth_date": "1980-01-01"},
    )
    assert [p.field for p in problems] == ["subject_id"]
    assert "letters, digits" in problems[0].problem
    assert "^" not in problems[0].problem  # no regular expression
    assert_value_free(problems, "MRN 4471")


def test_a_loinc_code_that_is_not_one_is_said_without_the_regular_expression() -> None:
    problems = problems_of(
        LabResultIn,
        {
            "subject_id": "01-003",
            "loinc_code": "HGB",
            "value": 9,
            "unit": "g/dL",
            "collected_at": "2026-11-01T08:00:00Z",
            "source_message_id": "M1",
        },
    )
    assert [(p.field, p.problem) for p in problems] == [
        ("loinc_code", "must be a LOINC code such as 718-7")
    ]


class _Quoting(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: str = Field(max_length=40)
    note: str = "x"

    @field_validator("phone")
    @classmethod
    def _digits(cls, value: str) -> str:
        raise ValueError(f"{value!r} is not a phone number")


def test_a_validator_message_that_quotes_the_input_is_replaced() -> None:
    problems = problems_of(_Quoting, {"phone": "+44 20 7946 0958"})
    assert [(p.field, p.problem) for p in problems] == [("phone", "is not valid")]
    assert_value_free(problems, "7946 0958")


def test_a_validator_message_that_quotes_nothing_is_kept() -> None:
    problems = problems_of(
        AdverseEventIn,
        {
            "subject_id": "01-003",
            "ae_id": "AE1",
            "term": NAME,
            "onset": "2026-11-01T08:00:00Z",
            "serious": False,
            "seriousness_criteria": ["hospitalisation"],
            "source_message_id": "M1",
        },
    )
    assert [(p.field, p.problem) for p in problems] == [
        ("(body)", "seriousness_criteria are given, so the event is serious")
    ]


def test_fhir_resource_errors_are_value_free_too() -> None:
    resource = {
        "resourceType": "Patient",
        "birthDate": f"{BIRTH}QX",
        "nickname": NAME,
        "telecom": [{"value": 79460958}],
    }
    problems = problems_of(Patient, resource)
    assert {p.field for p in problems} == {"birthDate", "nickname", "telecom.0.value"}
    assert_value_free(problems, BIRTH, NAME, "79460958")
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "Hb"},
        "valueQuantity": {"value": NAME},
    }
    assert_value_free(problems_of(Observation, observation), NAME)


def test_describe_is_one_bounded_line() -> None:
    problems = [FieldProblem(("a", "0", "b"), "is required", "missing")] * 200
    line = describe(problems)
    assert line.startswith("a.0.b: is required; a.0.b: is required")
    assert len(line) <= 1000
    assert describe([]) == "invalid"


def test_dict_keys_in_a_location_are_not_repeated() -> None:
    class Keyed(BaseModel):
        values: dict[str, int]

    problems = problems_of(Keyed, {"values": {"Quentin Marrowfield 1937": "x"}})
    assert [p.location for p in problems] == [("values", "(key)")]
