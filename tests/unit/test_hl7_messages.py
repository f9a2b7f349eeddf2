"""HL7 v2 ORU^R01 and ADT interpretation, and the ACKs that answer them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import hl7
import pytest

from services.ingest.adapters.study_files import load_sources
from services.ingest.domain.hl7.ack import build_ack
from services.ingest.domain.hl7.fields import parse_dtm, parse_reference_range
from services.ingest.domain.hl7.messages import interpret
from shared.events import LabResultReported, LabResultUnreadable, ResultStatus, SubjectEnrolled
from tests.support.services import REPO

ACK_TIME = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # when an ACK is written

BEIJING = ZoneInfo("Asia/Shanghai")
STUDY = "NCT05262686"
# the hospital's MRN first, the study's subject id (assigning authority: the study) second
PID = "PID|1||MRN0042^^^PKUPH^MR~01-003^^^NCT05262686^SS||~||19850412|F"


def oru(
    *obx: str,
    version: str = "2.5.1",
    pid: str = PID,
    obr_time: str = "20261120080000",
) -> str:
    segments = [
        f"MSH|^~\\&|LIS|PKUPH-LAB|VIGIL|SPONSOR|20261120083000||ORU^R01^ORU_R01|MSG0001|P|{version}",
        pid,
        f"OBR|1|ORD1|FIL1|58410-2^CBC^LN|||{obr_time}",
        *obx,
    ]
    return "\r".join(segments) + "\r"


HB = "OBX|1|NM|718-7^Hemoglobin^LN||8.4|g/dL^^UCUM|12.0-16.0|L|||F|||20261120080500+0800"


def test_numeric_result_becomes_a_lab_result() -> None:
    outcome = interpret(oru(HB), study_id=STUDY, zone=BEIJING)
    assert outcome.ack_code == "AA"
    (event,) = outcome.events
    assert isinstance(event, LabResultReported)
    assert (event.subject_id, event.loinc_code, event.value, event.unit) == (
        "01-003",
        "718-7",
        Decimal("8.4"),
        "g/dL",
    )
    assert (event.reference_low, event.reference_high) == (Decimal("12.0"), Decimal("16.0"))
    assert event.abnormal_flags == ("L",)
    assert event.collected_at == datetime(2026, 11, 20, 0, 5, tzinfo=UTC)
    assert event.source_message_id == "MSG0001/OBR1/OBX1"


def test_collection_time_falls_back_to_obr7_in_the_source_zone() -> None:
    obx = "OBX|1|NM|718-7^Hemoglobin^LN||13.1|g/dL|12-16|N|||F"
    (event,) = interpret(oru(obx), study_id=STUDY, zone=BEIJING).events
    assert isinstance(event, LabResultReported)
    assert event.collected_at.utcoffset() == timedelta(hours=8)
    assert event.collected_at.hour == 8


def test_several_obr_groups_and_dozens_of_obx() -> None:
    chem = [f"OBX|{n}|NM|1742-6^ALT^LN||{20 + n}|U/L|0-40|N|||F" for n in range(1, 31)]
    segments = oru(HB).rstrip("\r").split("\r")
    segments += ["OBR|2|ORD2|FIL2|24323-8^CMP^LN|||20261120090000", *chem]
    outcome = interpret("\r".join(segments), study_id=STUDY, zone=UTC)
    assert outcome.ack_code == "AA"
    assert len(outcome.events) == 31
    assert {e.source_message_id for e in outcome.events if isinstance(e, LabResultReported)} >= {
        "MSG0001/OBR2/OBX30"
    }


def test_structured_numeric_with_a_comparator() -> None:
    obx = "OBX|1|SN|718-7^Hemoglobin^LN||<^5.0|g/dL|12-16|LL|||F"
    (event,) = interpret(oru(obx), study_id=STUDY, zone=UTC).events
    assert isinstance(event, LabResultReported)
    assert (event.comparator, event.value) == ("<", Decimal("5.0"))


def test_loinc_in_the_alternate_coding() -> None:
    obx = "OBX|1|NM|HGB^Haemoglobin^L^718-7^Hemoglobin^LN||12|g/dL|12-16|N|||F"
    (event,) = interpret(oru(obx), study_id=STUDY, zone=UTC).events
    assert isinstance(event, LabResultReported)
    assert event.loinc_code == "718-7"


@pytest.mark.parametrize(
    ("code", "status"), [("C", ResultStatus.CORRECTED), ("R", ResultStatus.PRELIMINARY)]
)
def test_result_status(code: str, status: ResultStatus) -> None:
    obx = f"OBX|1|NM|718-7^Hemoglobin^LN||12|g/dL|12-16|N|||{code}"
    (event,) = interpret(oru(obx), study_id=STUDY, zone=UTC).events
    assert isinstance(event, LabResultReported)
    assert event.result_status == status


def test_unreadable_results_fail_alone_naming_segment_field_and_problem() -> None:
    bad = [
        "OBX|1|NM|718-7^Hemoglobin^LN||eight|g/dL|12-16|L|||F",
        "OBX|2|NM|718-7^Hemoglobin^LN||8.4||12-16|L|||F",
        "OBX|3|ZZ|718-7^Hemoglobin^LN||8.4|g/dL|12-16|L|||F",
    ]
    outcome = interpret(oru(HB, *bad), study_id=STUDY, zone=UTC)
    assert outcome.ack_code == "AA"
    readable = [e for e in outcome.events if isinstance(e, LabResultReported)]
    unreadable = [e for e in outcome.events if isinstance(e, LabResultUnreadable)]
    assert [e.value for e in readable] == [Decimal("8.4")]
    assert [(e.segment, e.field, e.error_code) for e in unreadable] == [
        ("OBX[2]", "OBX-5", "102"),
        ("OBX[3]", "OBX-6", "101"),
        ("OBX[4]", "OBX-2", "102"),
    ]
    where = {(p.segment, p.sequence, p.field, p.code, p.severity) for p in outcome.problems}
    assert where == {
        ("OBX", 2, 5, "102", "W"),
        ("OBX", 3, 6, "101", "W"),
        ("OBX", 4, 2, "102", "W"),
    }


def test_local_code_is_kept_unmapped_or_mapped_through_the_code_map() -> None:
    obx = "OBX|1|NM|HGB^Haemoglobin^L||8.4|g/dL|12-16|L|||F"
    (unmapped,) = interpret(oru(obx), study_id=STUDY, zone=UTC).events
    assert isinstance(unmapped, LabResultReported)
    assert (unmapped.loinc_code, unmapped.local_code, unmapped.local_system) == (None, "HGB", "L")
    assert unmapped.analyte_text == "Haemoglobin"
    (mapped,) = interpret(oru(obx), study_id=STUDY, zone=UTC, code_map={"L|HGB": "718-7"}).events
    assert isinstance(mapped, LabResultReported)
    assert (mapped.loinc_code, mapped.local_code) == ("718-7", "HGB")


@pytest.mark.parametrize(
    ("obx5", "value_type", "answer", "text"),
    [
        ("LA6576-8^Positive^LN", "CWE", "positive", "Positive"),
        ("260385009^Negative^SCT", "CE", "negative", "Negative"),
        ("Reactive", "ST", "positive", "Reactive"),
        ("NOT DETECTED", "ST", "negative", "NOT DETECTED"),
        ("Equivocal", "ST", "indeterminate", "Equivocal"),
        ("see comment", "ST", None, "see comment"),
    ],
)
def test_qualitative_results(obx5: str, value_type: str, answer: str | None, text: str) -> None:
    obx = f"OBX|1|{value_type}|7918-6^HIV 1+2 Ab^LN||{obx5}||Negative||||F"
    (event,) = interpret(oru(obx), study_id=STUDY, zone=UTC).events
    assert isinstance(event, LabResultReported)
    assert (event.qualitative, event.value_text, event.value) == (answer, text, None)


def test_missing_subject_is_named() -> None:
    outcome = interpret(oru(HB, pid="PID|1||"), study_id=STUDY, zone=UTC)
    assert outcome.ack_code == "AE"
    assert [(p.segment, p.field, p.code) for p in outcome.problems] == [("PID", 3, "101")]


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (oru(HB, version="2.7"), "203"),
        (oru(HB).replace("ORU^R01^ORU_R01", "ORM^O01"), "200"),
        (oru(HB).replace("ORU^R01^ORU_R01", "ADT^A03"), "201"),
    ],
)
def test_unsupported_type_or_version_is_ar(message: str, code: str) -> None:
    outcome = interpret(message, study_id=STUDY, zone=UTC)
    assert outcome.ack_code == "AR"
    assert outcome.problems[0].code == code


def test_adt_registers_a_subject() -> None:
    message = "\r".join(
        [
            "MSH|^~\\&|EDC|SITE|VIGIL|SPONSOR|20261120083000||ADT^A04^ADT_A01|ADT01|P|2.4",
            "PID|1||01-021^^^NCT05262686^SS||~||19790203|M",
            "PV1|1|O|RHEUM^^^PKUPH-02",
        ]
    )
    outcome = interpret(message, study_id=STUDY, zone=UTC)
    assert outcome.ack_code == "AA"
    (event,) = outcome.events
    assert isinstance(event, SubjectEnrolled)
    assert (event.subject_id, event.site_id, event.sex.value, event.birth_date) == (
        "01-021",
        "PKUPH-02",
        "M",
        date(1979, 2, 3),
    )


def test_ack_echoes_the_control_id_and_carries_err_segments() -> None:
    bad = "OBX|1|NM|718-7^Hemoglobin^LN||eight|g/dL|12-16|L|||F"
    outcome = interpret(oru(bad, version="2.3"), study_id=STUDY, zone=UTC)
    text = build_ack(
        outcome,
        sending_application="VIGIL",
        sending_facility="S",
        ack_control_id="A1",
        now=ACK_TIME,
    )
    ack = hl7.parse(text)
    assert str(ack.segment("MSH")[9]) == "ACK^R01^ACK"
    assert str(ack.segment("MSA")[1]) == "AA"  # taken; the one result kept unreadable
    assert str(ack.segment("MSA")[2]) == "MSG0001"
    assert "could not be read" in str(ack.segment("MSA")[3])
    err = ack.segment("ERR")
    assert str(err[2]) == "OBX^1^5"
    assert str(err[3]).startswith("102^Data type error^HL70357")
    assert str(err[4]) == "W"
    assert str(err[1]).startswith("OBX^1^5^102")  # the 2.3 layout for a 2.3 sender
    text = ack.unescape(str(err[8]))
    assert "OBX-5" in text
    assert "not a number" in text
    assert "eight" not in text  # the problem, never the value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20261120", datetime(2026, 11, 20, tzinfo=UTC)),
        ("202611200805", datetime(2026, 11, 20, 8, 5, tzinfo=UTC)),
        (
            "20261120080530.25-0500",
            datetime(2026, 11, 20, 8, 5, 30, 250000, tzinfo=timezone(timedelta(hours=-5))),
        ),
    ],
)
def test_hl7_times(text: str, expected: datetime) -> None:
    assert parse_dtm(text, default_zone=UTC) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3.5-5.0", ("3.5", "5.0")),
        ("<1.0", (None, "1.0")),
        (">60", ("60", None)),
        ("neg", (None, None)),
    ],
)
def test_reference_ranges(text: str, expected: tuple[str | None, str | None]) -> None:
    low, high = parse_reference_range(text)
    assert (low, high) == tuple(None if v is None else Decimal(v) for v in expected)


def test_the_sender_chooses_the_study_and_the_zone() -> None:
    router = load_sources(REPO / "studies", default_study="OTHER", default_zone=UTC)
    obx = "OBX|1|NM|718-7^Hemoglobin^LN||13|g/dL|12-16|N|||F"
    (event,) = interpret(
        oru(obx, obr_time="20261120080000"), study_id="OTHER", zone=UTC, route=router.route
    ).events
    assert event.study_id == "NCT05262686"  # MSH-3 LIS, MSH-4 PKUPH-LAB
    assert isinstance(event, LabResultReported)
    assert event.collected_at.utcoffset() == timedelta(hours=8)
    pid = "PID|1||01-003^^^OTHER^SS"  # the default study's own identifier
    unknown = oru(obx, pid=pid).replace("|LIS|PKUPH-LAB|", "|OTHERLIS|ELSEWHERE|")
    (other,) = interpret(unknown, study_id="OTHER", zone=UTC, route=router.route).events
    assert other.study_id == "OTHER"


def test_what_real_senders_do_is_accepted() -> None:
    message = oru(
        "OBX|1|NM|718-7^Hemoglobin^LN||<5.0|g/dL|12-16|LL|||F",  # censored value in NM
        "OBX|2|NM|1742-6^ALT^LN|||U/L|0-40||||I",  # still pending
        "NTE|1||specimen slightly haemolysed",
    ).replace("\r", "\r\n")  # CR LF line ends
    outcome = interpret(message, study_id=STUDY, zone=UTC)
    assert outcome.ack_code == "AA", outcome.reason
    (event,) = outcome.events
    assert isinstance(event, LabResultReported)
    assert (event.comparator, event.value) == ("<", Decimal("5.0"))
