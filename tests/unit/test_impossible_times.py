"""Times and values that cannot be right, as ingest's readers answer them (HL7 here; the
JSON and FHIR answers over HTTP are in tests/e2e/test_impossible_inputs.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import hl7
import pytest
from pydantic import ValidationError

from services.ingest.domain.hl7.ack import build_ack
from services.ingest.domain.hl7.messages import interpret
from services.ingest.domain.plausible_times import time_problems
from shared.events import LabResultReported, MedicationRecorded, SubjectEnrolled
from tests.unit.test_hl7_messages import HB, STUDY, oru

ACK_TIME = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # when an ACK is written

NOW = datetime(2026, 11, 20, 9, tzinfo=UTC)


def _ack(message: str) -> hl7.Message:
    outcome = interpret(message, study_id=STUDY, zone=UTC, now=NOW)
    return hl7.parse(
        build_ack(
            outcome, sending_application="V", sending_facility="S", ack_control_id="A", now=ACK_TIME
        )
    )


def test_an_impossible_value_is_accepted_with_a_warning_naming_its_obx() -> None:
    negative = "OBX|2|NM|718-7^Hemoglobin^LN||-3|g/dL^^UCUM|12.0-16.0|L|||F|||20261120080500"
    outcome = interpret(oru(HB, negative), study_id=STUDY, zone=UTC, now=NOW)
    assert outcome.ack_code == "AA"
    assert [e.value for e in outcome.events if isinstance(e, LabResultReported)] == [
        Decimal("8.4"),
        Decimal(-3),
    ]
    (problem,) = outcome.problems
    assert (problem.segment, problem.sequence, problem.field, problem.severity) == (
        "OBX",
        2,
        5,
        "W",
    )
    assert "below anything physiological" in problem.text
    ack = _ack(oru(HB, negative))
    assert str(ack.segment("MSA")[1]) == "AA"
    err = ack.segment("ERR")
    assert (str(err[2]), str(err[4])) == ("OBX^2^5", "W")


def test_a_possible_value_gets_no_warning() -> None:
    outcome = interpret(oru(HB), study_id=STUDY, zone=UTC, now=NOW)
    assert (outcome.ack_code, outcome.problems) == ("AA", [])


def test_a_collection_time_in_the_future_refuses_the_message_naming_obx14() -> None:
    future = "OBX|1|NM|718-7^Hemoglobin^LN||8.4|g/dL|12-16|L|||F|||20991120080500"
    outcome = interpret(oru(future), study_id=STUDY, zone=UTC, now=NOW)
    assert outcome.ack_code == "AE"
    assert outcome.events == []
    (problem,) = outcome.problems
    assert (problem.segment, problem.sequence, problem.field) == ("OBX", 1, 14)
    assert "in the future" in problem.text


def test_a_collection_time_from_obr7_in_the_future_names_obr7() -> None:
    untimed = "OBX|1|NM|718-7^Hemoglobin^LN||8.4|g/dL|12-16|L|||F"
    outcome = interpret(oru(untimed, obr_time="20991120080000"), study_id=STUDY, zone=UTC, now=NOW)
    assert outcome.ack_code == "AE"
    (problem,) = outcome.problems
    assert (problem.segment, problem.field) == ("OBR", 7)
    assert problem.text.startswith("OBR-7")


def test_a_sender_clock_a_little_ahead_is_no_future() -> None:
    ahead = "OBX|1|NM|718-7^Hemoglobin^LN||8.4|g/dL|12-16|L|||F|||20261120200000"
    outcome = interpret(oru(ahead), study_id=STUDY, zone=UTC, now=NOW)
    assert outcome.ack_code == "AA"
    strict = interpret(oru(ahead), study_id=STUDY, zone=UTC, now=NOW, clock_skew=timedelta(0))
    assert strict.ack_code == "AE"


def _adt(birth: str) -> str:
    return "\r".join(
        [
            "MSH|^~\\&|EDC|SITE|VIGIL|SPONSOR|20261120083000||ADT^A04^ADT_A01|ADT01|P|2.5.1",
            f"PID|1||01-021^^^NCT05262686^SS||~||{birth}|M",
            "PV1|1|O|RHEUM^^^PKUPH-02",
        ]
    )


@pytest.mark.parametrize(("birth", "words"), [("20300101", "future"), ("19000101", "125 years")])
def test_an_adt_birth_date_that_cannot_be_is_refused_naming_pid7(birth: str, words: str) -> None:
    outcome = interpret(_adt(birth), study_id=STUDY, zone=UTC, now=NOW)
    assert (outcome.ack_code, outcome.events) == ("AE", [])
    (problem,) = outcome.problems
    assert (problem.segment, problem.field) == ("PID", 7)
    assert words in problem.text


def test_an_adt_birth_date_that_can_be_is_registered() -> None:
    outcome = interpret(_adt("19790203"), study_id=STUDY, zone=UTC, now=NOW)
    assert outcome.ack_code == "AA"


def test_day0_before_birth_is_refused_by_the_enrolment_itself() -> None:
    with pytest.raises(ValidationError, match="day0") as raised:
        SubjectEnrolled(
            study_id=STUDY,
            subject_id="01-001",
            site_id="S1",
            sex="F",
            birth_date=date(1980, 6, 15),
            day0=date(1979, 1, 1),
        )
    assert raised.value.errors()[0]["loc"] == ("day0",)


def test_time_problems_name_the_field() -> None:
    enrolled = SubjectEnrolled(
        study_id=STUDY, subject_id="01-001", site_id="S1", sex="F", birth_date=date(2027, 1, 1)
    )
    (found,) = time_problems(enrolled, NOW)
    assert found.field == "birth_date"


def _medication(start: datetime) -> MedicationRecorded:
    return MedicationRecorded(
        study_id=STUDY, subject_id="01-001", category="concomitant", medication_id="M1",
        drug="rituximab", dose=Decimal(1000), dose_unit="mg", route="IV", frequency="once",
        start=start, source_message_id="MED-1",
    )  # fmt: skip


def test_a_medication_started_in_the_future_is_refused_naming_its_start() -> None:
    """Issue 15 (outside tests): rituximab 'started' in 2099 is refused at ingest like a
    collection time in the future, not judged as a prohibited medication."""
    (found,) = time_problems(_medication(datetime(2099, 1, 1, tzinfo=UTC)), NOW)
    assert found.field == "start"
    assert "future" in found.problem


def test_a_medication_started_within_the_clock_skew_is_taken() -> None:
    assert time_problems(_medication(NOW + timedelta(hours=12)), NOW) == []


@pytest.mark.parametrize("text", ["NaN", "-Infinity"])
def test_a_value_that_is_no_number_is_never_a_value(text: str) -> None:
    """NaN cannot reach a rule: HL7 keeps it unreadable (W), the payload refuses it."""
    obx = f"OBX|1|NM|718-7^Hemoglobin^LN||{text}|g/dL|12-16|L|||F"
    outcome = interpret(oru(obx), study_id=STUDY, zone=UTC, now=NOW)
    assert outcome.ack_code == "AA"
    assert not any(isinstance(e, LabResultReported) for e in outcome.events)
    assert [p.severity for p in outcome.problems] == ["W"]
    with pytest.raises(ValidationError, match="value"):
        LabResultReported(
            study_id=STUDY,
            subject_id="01-001",
            loinc_code="718-7",
            value=Decimal(text),
            unit="g/dL",
            collected_at=NOW,
            source_message_id="M1",
        )
