"""Reading OBX values, units, ranges and observation identities as labs write them (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.ingest.domain.hl7.fields import number_in_text, parse_reference_range, read_unit
from services.ingest.domain.hl7.messages import interpret
from shared.events import LabResultReported, LabResultUnreadable

MSH = "MSH|^~\\&|LIS|LAB|VIGIL|SP|20261120083000||ORU^R01^ORU_R01|{control}|P|2.5.1"
PID = "PID|1||01-003^^^NCT05262686^SS"


@pytest.mark.parametrize(
    ("components", "unit"),
    [
        (["10", "9/L"], "10^9/L"),
        (["x10", "9/L"], "x10^9/L"),
        (["10", "9/L", "", "UCUM"], "10^9/L"),
        (["10", "9/L", "UCUM"], "10^9/L"),
        (["g/dL", "g/dL", "UCUM"], "g/dL"),
        (["", "mg/dL", "L"], "mg/dL"),
        (["mL/min", "", "99LAB"], "mL/min"),
        (["g/dL", "g/dL"], "g/dL"),
        (["mmol/L"], "mmol/L"),
        (["", ""], ""),
    ],
)
def test_the_whole_obx_6_is_the_unit(components: list[str], unit: str) -> None:
    assert read_unit(components) == unit


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("7 - 40 U/L", "7", "40"),
        ("7-40", "7", "40"),
        ("7.0 - 40.0", "7.0", "40.0"),
        ("7 to 40", "7", "40"),
        ("-2 - 2", "-2", "2"),
        ("-5--1", "-5", "-1"),
        ("<40", None, "40"),
        ("<=40", None, "40"),
        ("≤ 40 U/L", None, "40"),
        (">=60", "60", None),
        ("≥60 mL/min/1.73m2", "60", None),
        ("12.0-16.0 g/dL (adult women)", "12.0", "16.0"),
        ("40-7", "40", "7"),  # upside down: kept as sent, set aside by the rules (issue 15)
        ("negative", None, None),
    ],
)
def test_reference_ranges_as_labs_write_them(text: str, low: str | None, high: str | None) -> None:
    assert parse_reference_range(text) == (
        None if low is None else Decimal(low),
        None if high is None else Decimal(high),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [("7.0", (None, "7.0")), ("<0.5", ("<", "0.5")), ("≥ 60", (">=", "60")),
     ("POS", None), ("1.2.3", None), ("7.0 g/dL", None)],
)  # fmt: skip
def test_a_number_in_text(text: str, expected: tuple[str | None, str] | None) -> None:
    found = number_in_text(text)
    assert found == (None if expected is None else (expected[0], Decimal(expected[1])))


def results(*obx: str, obr: str = "OBR|1|P1|F1|718-7^Hb^LN|||20261120080000", control: str = "M1"
            ) -> list[LabResultReported]:  # fmt: skip
    text = "\r".join([MSH.format(control=control), PID, obr, *obx])
    outcome = interpret(text, study_id="NCT05262686", zone=UTC)
    assert outcome.ack_code == "AA", outcome.reason
    return [e for e in outcome.events if isinstance(e, LabResultReported)]


AT_8 = "OBX|1|NM|718-7^Hb^LN||7.0|g/dL|12-16|L|||{status}|||20261120080000"
AT_10 = "OBX|2|NM|718-7^Hb^LN||12.5|g/dL|12-16|N|||{status}|||20261120100000"


@pytest.mark.parametrize("obr", ["OBR|1|P1|F1|718-7^Hb^LN", "OBR|1|||718-7^Hb^LN"])
def test_serial_results_are_different_observations_and_a_correction_finds_its_own(
    obr: str,
) -> None:
    """Two OBX of one OBX-3 without OBX-4 at different OBX-14 times, with or without
    order numbers: two observations; a later C of the 08:00 one (another MSH-10) has the
    08:00 one's identity, not the 10:00 one's."""
    first, second = results(AT_8.format(status="F"), AT_10.format(status="F"), obr=obr)
    assert first.observation_key != second.observation_key
    (corrected,) = results(AT_8.format(status="C"), obr=obr, control="M2")
    assert corrected.observation_key == first.observation_key
    assert "M1" not in first.observation_key  # never MSH-10


def test_a_sub_id_tells_repeated_obx_apart_and_makes_time_no_part_of_the_identity() -> None:
    one = "OBX|1|NM|718-7^Hb^LN|1|7.0|g/dL|12-16|L|||F|||20261120080000"
    two = "OBX|2|NM|718-7^Hb^LN|2|7.1|g/dL|12-16|L|||F|||20261120080000"
    a, b = results(one, two)
    assert a.observation_key != b.observation_key
    (again,) = results(one.replace("20261120080000", "20261120081000").replace("|F|", "|C|"))
    assert again.observation_key == a.observation_key


def test_order_numbers_of_two_laboratories_are_told_apart_by_their_namespace() -> None:
    obx = "OBX|1|NM|718-7^Hb^LN|1|7.0|g/dL|12-16|L|||F"
    (a,) = results(obx, obr="OBR|1||F1^LAB-A|718-7^Hb^LN|||20261120080000")
    (b,) = results(obx, obr="OBR|1||F1^LAB-B|718-7^Hb^LN|||20261120080000")
    assert a.observation_key != b.observation_key


def test_numeric_repetitions_are_each_a_result_and_tx_lines_one_text() -> None:
    a, b = results("OBX|1|NM|718-7^Hb^LN||13.0~7.0|g/dL|12-16|L|||F")
    assert (a.value, b.value) == (Decimal("13.0"), Decimal("7.0"))
    assert a.observation_key != b.observation_key
    (text,) = results("OBX|1|TX|11529-5^Report^LN||line one~line two||||||F")
    assert text.value_text == "line one line two"


def test_every_repetition_of_obx_8_is_a_flag_and_an_empty_obx_8_none() -> None:
    (flagged,) = results("OBX|1|NM|718-7^Hb^LN||9.0|g/dL|12-16|L~A~~LL|||F")
    assert flagged.abnormal_flags == ("L", "A", "LL")
    (plain,) = results("OBX|1|NM|718-7^Hb^LN||13.0|g/dL|12-16||||F")
    assert plain.abnormal_flags == ()
    many = "~".join(f"F{n}" for n in range(12))
    (capped,) = results(f"OBX|1|NM|718-7^Hb^LN||13.0|g/dL|12-16|{many}|||F")
    assert capped.abnormal_flags == tuple(f"F{n}" for n in range(10))  # the first ten


def test_an_unreadable_obx_with_fields_that_fit_no_event_is_still_kept() -> None:
    """A flag with a tab in it and a local code longer than an event's code: the unreadable
    result is kept without them, never an internal error."""
    code = "X" * 80
    obx = f"OBX|1|NM|{code}^Odd^99LAB||eight|g/dL|12-16|H\tH~POS|||F"
    text = "\r".join([MSH.format(control="M9"), PID, "OBR|1|P1|F1|X^Y^LN|||20261120080000", obx])
    outcome = interpret(text, study_id="NCT05262686", zone=UTC)
    assert outcome.ack_code == "AA", outcome.reason
    (kept,) = outcome.events
    assert isinstance(kept, LabResultUnreadable)
    assert kept.local_code is None
    assert kept.abnormal_flags == ()
    assert kept.field == "OBX-5"


@pytest.mark.parametrize(
    ("obx_14", "obr_7", "precision"),
    [
        ("20261120080000", "", None),
        ("202611200800", "", "minute"),
        ("2026112008", "", "hour"),
        ("20261120", "", "day"),
        ("202611", "", "month"),
        ("", "20261120", "day"),
        ("", "20261120081500+0800", None),
    ],
)
def test_the_event_says_how_precisely_the_lab_dated_the_collection(
    obx_14: str, obr_7: str, precision: str | None
) -> None:
    """HL7 DTM is as precise as the sender writes it (2.5.1 2A.3.22): a date alone is a
    day, not midnight; the event keeps that, whether the time came from OBX-14 or OBR-7."""
    obx = f"OBX|1|NM|718-7^Hb^LN||7.0|g/dL|12-16|L|||F|||{obx_14}"
    (result,) = results(obx, obr=f"OBR|1|P1|F1|718-7^Hb^LN|||{obr_7}")
    assert result.collected_precision == precision


def test_a_test_named_only_by_its_alternate_coding_is_kept_under_the_labs_own_code() -> None:
    """OBX-3 is a CE/CWE: a lab may leave the primary coding empty (even naming LN) and
    name the test in the alternate triplet; it is the lab's own code, kept unmapped."""
    obx = "OBX|1|NM|^^LN^RBC^RBC^LAB|0|3.01|10(12)/L|3.9-5.2|L|||F|||20261120081700"
    (result,) = results(obx)
    assert (result.loinc_code, result.local_code, result.local_system) == (None, "RBC", "LAB")
    assert result.analyte_text == "RBC"


def test_a_loinc_in_the_alternate_coding_is_the_loinc_of_a_local_primary() -> None:
    obx = "OBX|1|NM|HGB^Haemoglobin^99LAB^718-7^Hb^LN||7.0|g/dL|12-16|L|||F|||20261120080000"
    (result,) = results(obx)
    assert (result.loinc_code, result.local_code) == ("718-7", None)


def test_a_date_reported_as_a_result_is_kept_as_its_text() -> None:
    """OBX-2 TS/DT (a date of onset asked at order entry) is a result, not an error."""
    obx = "OBX|1|TS|30952-6^Date vaccinated^LN||20261101||||||F|||20261120080000"
    (result,) = results(obx)
    assert (result.value, result.value_text) == (None, "20261101")


def test_the_err_names_the_first_field_that_is_wrong() -> None:
    """A missing '|' shifts every field: the wrong OBX-2 is what the ERR names."""
    text = "\r".join(
        [MSH.format(control="M9"), PID, "OBR|1|P1|F1|718-7^Hb^LN|||20261120080000",
         "OBX|1|CE30955-9&30956-7|Vaccine^L||X|||||F"]
    )  # fmt: skip
    outcome = interpret(text, study_id="NCT05262686", zone=UTC)
    assert [(p.segment, p.field, p.code) for p in outcome.problems] == [("OBX", 2, "102")]


def test_text_that_is_no_hl7_message_is_a_segment_sequence_error_not_an_internal_one() -> None:
    """HL7 table 0357: 100 'segment sequence error' (a required segment, MSH, missing);
    207 'application internal error' would send the lab's integrator to the wrong place."""
    outcome = interpret("PID|1||01-003\rOBX|1|NM|718-7^Hb^LN||7.0", study_id="S", zone=UTC)
    assert outcome.ack_code == "AR"
    assert [(p.segment, p.code) for p in outcome.problems] == [("MSH", "100")]


def test_a_collection_time_only_in_the_specimen_segment_is_read_from_spm_17() -> None:
    """ELR senders may leave OBR-7 empty and date the specimen in SPM-17 (2.5.1 7.4.3.17):
    the result is dated by it, not kept unreadable for having no time."""
    text = "\r".join(
        [MSH.format(control="M7"), PID, "OBR|1|P1|F1|718-7^Hb^LN",
         "OBX|1|NM|718-7^Hb^LN||7.0|g/dL|12-16|L|||F",
         "SPM|1|||119297000^Blood^SCT|||||||||||||20261120073000"]
    )  # fmt: skip
    outcome = interpret(text, study_id="NCT05262686", zone=UTC)
    (result,) = [e for e in outcome.events if isinstance(e, LabResultReported)]
    assert result.collected_at == datetime(2026, 11, 20, 7, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("obx", "problem"),
    [
        ("OBX|1|NM|718-7^Hb^LN||NaN|g/dL|12-16||||F", "OBX-5 (NM value) is not a number"),
        ("OBX|1|NM|718-7^Hb^LN||sNaN|g/dL|12-16||||F", "OBX-5 (NM value) is not a number"),
        ("OBX|1|NM|718-7^Hb^LN||-Infinity|g/dL|12-16||||F", "OBX-5 (NM value) is not a number"),
        ("OBX|1|NM|718-7^Hb^LN||1E999999999|g/dL|12-16||||F", "OBX-5 (NM value) is not a number"),
        ("OBX|1|NM|718-7^Hb^LN||1E-999999999|g/dL|12-16||||F", "OBX-5 (NM value) is not a number"),
        ("OBX|1|SN|718-7^Hb^LN||^NaN|g/dL|12-16||||F", "OBX-5 (SN value)"),
        ("OBX|1|SN|718-7^Hb^LN||<^1E999999999|g/dL|12-16||||F", "OBX-5 (SN value)"),
        ("OBX|1|NM|718-7^Hb^LN||8.0|g/dL|12-16||||F|||20261320080000", "OBX-14"),
        ("OBX|1|NM|718-7^Hb^LN||8.0|g/dL|12-16||||F|||20261132080000", "OBX-14"),
        ("OBX|1|NM|718-7^Hb^LN||8.0|g/dL|12-16||||F|||20261120250000", "OBX-14"),
        ("OBX|1|NM|718-7^Hb^LN||8.0|g/dL|12-16||||F|||99991231080000", "OBX-14"),
        ("OBX|1|NM|718-7^Hb^LN||8.0|g/dL|12-16||||F|||20261120080000+2500", "OBX-14"),
    ],
)
def test_a_malformed_number_or_time_is_kept_as_an_unreadable_result_never_as_a_value(
    obx: str, problem: str
) -> None:
    """Found unverified while breaking issue 18: month 13, 1E999999999 and NaN were
    answered AA. Each is kept, answered AA with an ERR for that field (the lab sees it;
    the message as a whole was taken), and stored as an unreadable result for review,
    never as a number the rules could judge."""
    text = "\r".join([MSH.format(control="BAD"), PID, "OBR|1|||718-7^Hb^LN|||20261120080000", obx])
    outcome = interpret(text, study_id="NCT05262686", zone=UTC)
    assert outcome.ack_code == "AA"
    (event,) = outcome.events
    assert isinstance(event, LabResultUnreadable)
    assert event.problem.startswith(problem)
    assert event.loinc_code == "718-7"
    assert event.source_message_id.startswith("BAD/")
    assert problem in outcome.reason
    assert "kept for review" in outcome.reason
    fields = obx.split("|")
    sent = [fields[5].split("^")[-1], *fields[14:15]]
    assert not [value for value in sent if value in event.problem], "the problem names the value"
