"""Issue 15 (items 8 and 11): the fixes to the outside tester's findings that its own tests
do not pin down (the warnings for an implausible range, the limits of the clock skew)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import hl7
import pytest
from pydantic import TypeAdapter, ValidationError

from services.ingest.domain.fhir_entries import implausible_outcome
from services.ingest.domain.fhir_mapping import observation_event
from services.ingest.domain.hl7.ack import build_ack
from services.ingest.domain.hl7.messages import interpret
from services.ingest.domain.plausible_times import time_problems
from shared.events import LabResultReported
from shared.events.values import ClinicalDate, ClinicalDateTime

ACK_TIME = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # when an ACK is written

STUDY = "NCT05262686"
NOW = datetime(2026, 11, 20, 9, tzinfo=UTC)


def _oru(obx: str) -> str:
    return "\r".join(
        [
            "MSH|^~\\&|LIS|LAB|VIGIL|SPONSOR|20261120083000||ORU^R01^ORU_R01|M1|P|2.5.1",
            f"PID|1||01-003^^^{STUDY}^SS||~||19850412|F",
            "OBR|1|ORD1|FIL1|58410-2^CBC^LN|||20261120080000",
            obx,
        ]
    )


def test_hl7_reversed_reference_range_is_warned_at_obx7() -> None:
    """OBX-7 "40-7" is kept as sent (the rules set it aside) and the laboratory is told:
    AA with an ERR of severity W at OBX^1^7 (HL7 v2.5.1 2.15.5)."""
    outcome = interpret(
        _oru("OBX|1|NM|1742-6^ALT^LN||121|U/L|40-7|H|||F"), study_id=STUDY, zone=UTC, now=NOW
    )
    ack = hl7.parse(build_ack(outcome, sending_application="V", sending_facility="S",
                              ack_control_id="A", now=ACK_TIME))  # fmt: skip
    assert outcome.ack_code == "AA"
    assert [(str(e[2]), str(e[4])) for e in ack.segments("ERR")] == [("OBX^1^7", "W")]


def test_fhir_reversed_reference_range_is_a_warning_at_reference_range() -> None:
    resource = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "1742-6"}]},
        "subject": {"reference": "Patient/01-003"},
        "effectiveDateTime": "2026-11-20T08:00:00Z",
        "valueQuantity": {"value": 121, "unit": "U/L"},
        "referenceRange": [{"low": {"value": 40, "unit": "U/L"}, "high": {"value": 7}}],
    }
    event, issues = observation_event(resource, study_id=STUDY, zone=UTC)
    assert issues == []
    outcome = implausible_outcome(event)
    assert outcome is not None
    assert [i["expression"] for i in outcome["issue"]] == [["Observation.referenceRange"]]


@pytest.mark.parametrize("written", ["20261120", "2099", 1790000000])
def test_a_date_time_written_as_a_number_is_refused(written: object) -> None:
    with pytest.raises(ValidationError, match="not a number"):
        TypeAdapter(ClinicalDateTime).validate_python(written)
    with pytest.raises(ValidationError, match="not a number"):
        TypeAdapter(ClinicalDate).validate_python(written)


def _lab(ahead: timedelta) -> LabResultReported:
    return LabResultReported(
        study_id=STUDY,
        subject_id="01-003",
        loinc_code="718-7",
        value=Decimal("8.4"),
        unit="g/dL",
        collected_at=NOW + ahead,
        source_message_id="M1",
    )


@pytest.mark.parametrize(
    ("hours", "offset_sent", "refused"),
    [(13, True, False), (15, True, True), (20, False, False), (25, False, True)],
)
def test_a_time_with_its_offset_gets_14_hours_not_a_day(
    hours: int, offset_sent: bool, refused: bool
) -> None:
    """A wrong offset moves an instant by at most 14 h (a UTC+14 local time labelled Z);
    the whole day is for times sent without an offset (the zone is a guess)."""
    found = time_problems(_lab(timedelta(hours=hours)), NOW, offset_sent=offset_sent)
    assert [p.field for p in found] == (["collected_at"] if refused else [])
