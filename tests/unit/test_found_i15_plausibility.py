"""Issue 15 (items 8 and 11), outside break round: impossible values, times and reference
ranges as real laboratory systems send them, through the real HL7 v2 reader and ACK
builder, the real FHIR R4 mapping and the real rules batch handler (in memory).

Each test failed on the code it was written against (except the guards marked as such)
and says what a demanding safety physician or data manager expects, with the standard."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import hl7
import pytest
from pydantic import ValidationError

from services.ingest.domain.fhir_mapping import observation_event, patient_event
from services.ingest.domain.hl7.ack import build_ack
from services.ingest.domain.hl7.messages import Interpretation, interpret
from shared.events import EventPayload, LabResultReported
from tests.support.rules_harness import InMemoryRulesStore, fact, run_batches
from tests.unit.test_clinical_cases import PACK, _describe, _run
from tests.unit.test_fhir_mapping import observation

ACK_TIME = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # when an ACK is written

STUDY = "NCT05262686"
SUBJECT = "01-003"
NOW = datetime(2026, 11, 20, 9, tzinfo=UTC)
UCUM = "http://unitsofmeasure.org"
PID = f"PID|1||MRN0042^^^PKUPH^MR~{SUBJECT}^^^{STUDY}^SS||~||19850412|F"


def _oru(*segments: str, pid: str = PID, obr_time: str = "20261120080000") -> str:
    return (
        "\r".join(
            [
                "MSH|^~\\&|LIS|PKUPH-LAB|VIGIL|SPONSOR|20261120083000||ORU^R01^ORU_R01|MSG0001|P|2.5.1",
                pid,
                f"OBR|1|ORD1|FIL1|58410-2^CBC^LN|||{obr_time}",
                *segments,
            ]
        )
        + "\r"
    )


def _read(message: str) -> Interpretation:
    return interpret(message, study_id=STUDY, zone=UTC, now=NOW)


def _errs(outcome: Interpretation) -> list[tuple[str, str]]:
    """(ERR-2 location, ERR-4 severity) of each ERR of the ACK Vigil would send."""
    ack = hl7.parse(
        build_ack(
            outcome, sending_application="V", sending_facility="S", ack_control_id="A", now=ACK_TIME
        )
    )
    return [(str(err[2]), str(err[4])) for err in ack.segments("ERR")] if _has_err(ack) else []


def _has_err(ack: hl7.Message) -> bool:
    return any(str(segment[0]) == "ERR" for segment in ack)


def _judge(events: Sequence[EventPayload], subject: str = SUBJECT, **enrol: Any) -> list[str]:
    """Every signal and data-quality event the rules raise for the subject (enrolled with
    the harness's default woman born 1980, 60 kg, Day 0 2026-03-01) after ``events``."""
    batches = [[fact({"enrol": enrol}, subject)], *([event] for event in events)]
    store = InMemoryRulesStore()
    outcomes = asyncio.run(run_batches(store, batches, PACK))
    order = {e.id: i for i, e in enumerate(store.stream(STUDY, subject))}
    emitted = sorted(
        (e for o in outcomes for e in (*o.signals, *o.data_quality)), key=lambda e: order[e.id]
    )
    return [_describe(e.payload()) for e in emitted]


def _labs(outcome: Interpretation) -> list[LabResultReported]:
    return [e for e in outcome.events if isinstance(e, LabResultReported)]


# --- impossible values ------------------------------------------------------------------------


HB_AT_MOST_ZERO = "OBX|1|SN|718-7^Hemoglobin^LN||<=^0|g/dL|12.0-16.0|LL|||F"


def test_hl7_haemoglobin_at_most_zero_is_warned_in_the_ack() -> None:
    """HL7 v2.5.1 SN "<=^0" (haemoglobin less than or equal to 0 g/dL) allows only 0 or a
    negative concentration: no value it allows is physiological (Vigil itself calls "<^0"
    and a plain 0 impossible). A demanding data manager expects what item 8 says for any
    impossible value: MSA AA with an ERR of severity W naming OBX^1^5 (HL7 v2.5.1 2.15.5
    ERR-2 ERL, ERR-4 W), so the laboratory is asked to correct it."""
    outcome = _read(_oru(HB_AT_MOST_ZERO))
    assert outcome.ack_code == "AA"
    assert ("OBX^1^5", "W") in _errs(outcome)


def test_haemoglobin_at_most_zero_is_no_grade_3_anaemia() -> None:
    """Item 8: "Values that cannot be physiological ... must never raise a clinical
    signal". Haemoglobin <= 0 g/dL is graded CTCAE v5.0 grade 3 anaemia (< 8.0 g/dL) and
    e-mailed, exactly the -3 g/dL failure the issue reports, with only the comparator
    changed. Expected: the result is kept and raises one implausible-value, no signal."""
    from_hl7 = _labs(_read(_oru(HB_AT_MOST_ZERO)))
    assert _judge(from_hl7) == ["dq implausible-value"]
    described, _ = _run({"facts": [{"lab": {"loinc": "718-7", "value": "<=0", "unit": "g/dL"}}]})
    assert described == ["dq implausible-value"]


@pytest.mark.parametrize("text", ["6.5 g/dL", "-3 g/dL"])
def test_hl7_st_haemoglobin_with_its_unit_in_the_value_is_never_silent(text: str) -> None:
    """Laboratory systems often send OBX-2 ST with the unit inside OBX-5 ("6.5 g/dL").
    Vigil keeps it as text with no value, answers AA without any ERR, and the rules raise
    nothing at all: a critical haemoglobin of 6.5 g/dL (CTCAE v5.0 grade 3) reaches nobody,
    and -3 g/dL is neither judged nor reported as impossible. Issue 15: "no result a
    laboratory could send for a protocol analyte is ever ignored without a trace".
    Expected: the 6.5 g/dL raises anaemia (or at least a data-quality issue), the -3 g/dL
    an implausible-value (or unreadable) issue; never nothing."""
    outcome = _read(_oru(f"OBX|1|ST|718-7^Hemoglobin^LN||{text}|g/dL|12.0-16.0|LL|||F"))
    traces = [p for p in outcome.problems if p.severity == "W"]
    judged = _judge(_labs(outcome))
    assert traces or judged, "an unreadable haemoglobin left no trace anywhere"


@pytest.mark.parametrize(
    ("enrolment", "facts"),
    [
        ({"weight_kg": 0.5}, []),
        ({"weight_kg": None}, [{"lab": {"loinc": "29463-7", "value": 0.5, "unit": "kg", "at": 4}}]),
    ],
    ids=["enrolment-weight", "weight-observation"],
)
def test_an_adult_weighing_half_a_kilogram_is_no_renal_insufficiency(
    enrolment: dict[str, Any], facts: list[dict[str, Any]]
) -> None:
    """NCT05262686 enrols adults aged 18 to 70; this subject is 45. A body weight of
    0.5 kg (a lost digit, or grams sent as kilograms) is impossible for an adult, yet
    Cockcroft-Gault computes a creatinine clearance near 0.5 mL/min from it and Vigil
    raises renal insufficiency CTCAE grade 4 on a normal creatinine of 1.0 mg/dL. Item 8:
    an impossible value never raises a clinical signal; item 11: values are checked against
    each other (age). Expected: no renal signal; the weight refused at enrolment or raised
    as implausible-value."""
    creatinine = {"lab": {"loinc": "2160-0", "value": 1.0, "unit": "mg/dL", "ref": "0.5-1.1"}}
    refused: list[Any] = []
    try:
        described, _ = _run({"enrol": enrolment, "facts": [*facts, {**creatinine}]})
    except ValidationError as error:  # refusing the enrolment naming the weight is right
        refused = [e["loc"] for e in error.errors()]
    if refused:
        assert refused == [("weight_kg",)]
        return
    assert not any(d.startswith("raised renal") for d in described), described
    assert "dq implausible-value" in described


@pytest.mark.parametrize("percent", ["-5", "150"])
def test_an_impossible_neutrophil_percentage_is_warned_in_the_ack(percent: str) -> None:
    """Neutrophils/100 leukocytes (LOINC 770-8, UCUM %) is a fraction of the white cells:
    below 0 % or above 100 % it cannot be. Vigil answers AA without any ERR. Expected
    (item 8): AA with an ERR of severity W naming OBX^2^5 (HL7 v2.5.1 2.15.5)."""
    outcome = _read(
        _oru(
            "OBX|1|NM|6690-2^WBC^LN||5.0|10*9/L|3.5-9.5|N|||F",
            f"OBX|2|NM|770-8^Neutrophils/100 leukocytes^LN||{percent}|%|40-75|L|||F",
        )
    )
    assert ("OBX^2^5", "W") in _errs(outcome), _errs(outcome)


@pytest.mark.parametrize("percent", [-5, 150])
def test_an_impossible_neutrophil_percentage_derives_no_neutropenia(percent: int) -> None:
    """WBC 5.0 x 10^9/L with neutrophils -5 % gives a derived absolute count of
    -0.25 x 10^9/L, and Vigil raises neutropenia CTCAE v5.0 grade 4 (< 0.5) from it: an
    impossible value e-mailed as a life-threatening signal, exactly what item 8 forbids.
    150 % (7.5 x 10^9/L) is silently judged normal. Expected: no signal; one
    implausible-value issue for the percentage (a fraction of leukocytes lies in 0-100 %)."""
    described, _ = _run(
        {
            "facts": [
                [
                    {"lab": {"loinc": "6690-2", "value": 5, "unit": "10*9/L"}},
                    {"lab": {"loinc": "770-8", "value": percent, "unit": "%"}},
                ]
            ]
        }
    )
    assert described == ["dq implausible-value"]


@pytest.mark.parametrize("corrected", [-3, 80])
def test_a_correction_to_an_impossible_value_does_not_retract_grade_3_anaemia(
    corrected: int,
) -> None:
    """Hb 7.0 g/dL (CTCAE v5.0 grade 3, raised and sent to the investigators) is then
    corrected by the laboratory (OBX-11 C, same observation) to -3 or 80 g/dL. Vigil
    retracts the anaemia signal on the strength of a value it itself calls impossible and
    "not judged by any rule". The patient may well have Hb 7.0: the correction is as wrong
    as the original may be. Expected (item 8: an impossible value never changes a clinical
    signal; the pack's own cases: "no signal, no resolution"): the signal stays open and
    one implausible-value issue asks the laboratory to correct it again."""
    described, _ = _run(
        {
            "facts": [
                {"lab": {"loinc": "718-7", "value": 7.0, "unit": "g/dL", "id": "O1"}},
                {
                    "lab": {
                        "loinc": "718-7",
                        "value": corrected,
                        "unit": "g/dL",
                        "id": "O1",
                        "status": "C",
                        "msg": "M2",
                    }
                },
            ]
        }
    )
    assert described == ["raised anaemia-hb-le-9 g3", "dq implausible-value"]


@pytest.mark.parametrize("birth", ["2026-02-01", "2016-02-01"])
def test_a_birth_year_typo_does_not_mask_renal_insufficiency(birth: str) -> None:
    """NCT05262686 enrols adults aged 18-70. A site types the birth year 2026 (or 2016)
    for 1986: Vigil accepts a subject one month (or ten years) old at Day 0 without a word,
    and Cockcroft-Gault (derived and valid in adults only: Cockcroft & Gault, Nephron 1976)
    with (140 - 0) instead of (140 - 40) turns a creatinine of 3.0 mg/dL (CrCl 23.6 mL/min
    for the real 40-year-old woman: renal insufficiency, CTCAE v5.0 grade 3) into about
    33 mL/min: nothing is raised but a missing creatinine baseline. Expected (item 11:
    "check them against each other"): the age that cannot be right for this study is
    raised as a data-quality issue naming the birth date or age (and Cockcroft-Gault is not
    computed for it), never a silent miss."""
    creatinine = {
        "lab": {"loinc": "2160-0", "value": 3.0, "unit": "mg/dL", "ref": "0.5-1.1", "at": 5}
    }
    described, emitted = _run({"enrol": {"birth_date": birth}, "facts": [creatinine]})
    details = [str(getattr(e, "detail", "")) for e in emitted]
    assert any(("birth" in d or "age" in d.split()) for d in details), (described, details)


# --- reference ranges that cannot be right --------------------------------------------------


def test_hl7_reversed_reference_range_is_reported_as_implausible_not_missing() -> None:
    """OBX-7 "40-7" (low above high: the ALT range of the issue's item 11) is dropped by the
    HL7 reader without any ERR, so the rules tell the data manager the result "came without
    a reference range" (reference-range-missing), which is false: the laboratory sent one
    and must fix it. The same range through the case table raises
    reference-range-implausible. Expected through HL7 too: reference-range-implausible
    (and the fallback ULN), never reference-range-missing."""
    outcome = _read(_oru("OBX|1|NM|1742-6^ALT^LN||121|U/L|40-7|H|||F"))
    described = _judge(_labs(outcome))
    assert "dq reference-range-implausible" in described, described
    assert "dq reference-range-missing" not in described


@pytest.mark.parametrize("obx7", ["-5--1", "0-0", "<0"])
def test_a_reference_range_with_no_positive_uln_is_implausible_not_missing(obx7: str) -> None:
    """An ALT activity cannot be negative and its upper reference limit cannot be 0 U/L
    (IFCC; every laboratory's ALT ULN lies between about 30 and 60 U/L). Vigil sets such
    a range aside but says "came without a reference range" (reference-range-missing),
    sending the data manager to ask the laboratory for a range it did send. Expected
    (item 11): reference-range-implausible, judged against the fallback ULN."""
    outcome = _read(_oru(f"OBX|1|NM|1742-6^ALT^LN||121|U/L|{obx7}|H|||F"))
    described = _judge(_labs(outcome))
    assert "dq reference-range-implausible" in described, described
    assert "dq reference-range-missing" not in described


@pytest.mark.parametrize("obx7", ["7-4000", "7-1000000"])
def test_an_alt_uln_beyond_any_laboratory_does_not_silence_liver_injury(obx7: str) -> None:
    """ "7-4000" is "7-40.00" with its decimal point lost. Against a ULN of 4000 U/L an ALT
    of 121 U/L (3 x any real ULN: the study's liver-injury threshold, CTCAE v5.0 grade 2 by
    the fallback ULN 40 U/L) is in range, and Vigil raises nothing at all: no signal, no
    data-quality issue. Even a ULN of 1,000,000 U/L, above Vigil's own plausible range for
    ALT values (0 to 100000 U/L), is used as is. Expected (item 11): the range is raised as
    reference-range-implausible and the rule uses its fallback ULN, so liver injury is
    raised."""
    outcome = _read(_oru(f"OBX|1|NM|1742-6^ALT^LN||121|U/L|{obx7}|H|||F"))
    described = _judge(_labs(outcome))
    assert "dq reference-range-implausible" in described, described
    assert "raised liver-alt-ast-gt-3-uln g2" in described


def _fhir_alt(
    value: dict[str, Any], low: dict[str, Any], high: dict[str, Any]
) -> LabResultReported:
    resource = observation(
        code={"coding": [{"system": "http://loinc.org", "code": "1742-6", "display": "ALT"}]},
        subject={"reference": f"Patient/{SUBJECT}"},
        effectiveDateTime="2026-06-01T08:00:00+08:00",
        valueQuantity=value,
        referenceRange=[{"low": low, "high": high}],
        interpretation=[{"coding": [{"code": "H"}]}],
    )
    event, issues = observation_event(resource, study_id=STUDY, zone=UTC)
    assert issues == []
    assert isinstance(event, LabResultReported)
    return event


def _q(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def test_fhir_reference_range_in_ukat_per_litre_is_not_a_uln_in_units_per_litre() -> None:
    """FHIR R4 Observation.referenceRange.low/high are SimpleQuantity with their own unit.
    ALT 121 U/L with the range 0.12-0.67 ukat/L (= 7-40 U/L, ukat/L x 60, DOMAIN.md) is
    graded against a ULN of 0.67 U/L: 180 x ULN, CTCAE v5.0 grade 4 (> 20 x ULN) instead of
    grade 2 (121 / 40 = 3.0 x ULN). Expected: the range converted to the value's unit
    (grade 2), or set aside with a data-quality issue and the fallback ULN (grade 2)."""
    event = _fhir_alt(_q(121, "U/L"), _q(0.12, "ukat/L"), _q(0.67, "ukat/L"))
    described = _judge([event])
    assert "raised liver-alt-ast-gt-3-uln g2" in described, described
    assert not any(d.endswith("g4") for d in described)


def test_fhir_value_in_ukat_per_litre_with_its_range_in_units_per_litre_still_alerts() -> None:
    """The reverse: ALT 2.02 ukat/L (= 121 U/L, 3 x ULN: the study's liver-injury
    threshold) with the referenceRange 7-40 U/L. Vigil raises nothing at all, no signal
    and no data-quality issue: the 40 U/L ULN is apparently read as 40 ukat/L (2400 U/L).
    A silent miss (issue 15: "a result that should alert raises nothing and no
    data-quality event says why"). Expected: liver injury raised (grade 2)."""
    event = _fhir_alt(_q(2.02, "ukat/L"), _q(7, "U/L"), _q(40, "U/L"))
    described = _judge([event])
    assert "raised liver-alt-ast-gt-3-uln g2" in described, described


# --- times that cannot be right -------------------------------------------------------------

HB = "OBX|1|NM|718-7^Hemoglobin^LN||8.4|g/dL|12.0-16.0|L|||F"


@pytest.mark.parametrize("birth", ["20991231", "20270101"])
def test_an_oru_birth_date_in_the_future_is_named_in_the_ack(birth: str) -> None:
    """PID-7 of an ORU^R01 in the future cannot be a person's birth date: either the
    message is about another patient or its demographics are corrupt, which a safety
    monitor must not pass by (item 11: "a birth date in the future"). Vigil refuses it in
    ADT^A04 (AE naming PID-7) but in an ORU answers AA with no ERR at all. Expected: an ERR
    naming PID^1^7 (W if the results are kept, E if refused)."""
    outcome = _read(_oru(HB, pid=f"PID|1||{SUBJECT}^^^{STUDY}^SS||~||{birth}|F"))
    assert any(location == "PID^1^7" for location, _ in _errs(outcome)), _errs(outcome)


def test_an_oru_collected_before_its_own_birth_date_is_named_in_the_ack() -> None:
    """PID-7 2026-06-01 and OBX-14 2025-01-01: the specimen was collected before the
    patient was born, per the message itself (item 11: "a collection time ... before the
    subject's birth"). Vigil answers AA with no ERR. Expected: an ERR naming PID^1^7 or
    OBX^1^14."""
    outcome = _read(
        _oru(f"{HB}|||20250101080000", pid=f"PID|1||{SUBJECT}^^^{STUDY}^SS||~||20260601|F")
    )
    assert {loc for loc, _ in _errs(outcome)} & {"PID^1^7", "OBX^1^14"}, _errs(outcome)


def test_an_obr7_before_1900_is_located_at_obr7_not_obx14() -> None:
    """OBR-7 18500101 is reported with text "OBR-7 ... must be in the years 1900 to 2200"
    but ERR-2 says OBX^1^14, a field the laboratory left empty. HL7 v2.5.1 2.15.5: ERR-2
    (ERL) locates the error, so the laboratory's interface analyst looks at OBX-14 and finds
    nothing. Expected: ERR-2 OBR^1^7."""
    outcome = _read(_oru(HB, obr_time="18500101"))
    assert [loc for loc, _ in _errs(outcome)] == ["OBR^1^7"]


@pytest.mark.parametrize("spm17", ["20991119080000", "18501119080000"])
def test_a_specimen_collection_time_that_cannot_be_is_located_at_spm17(spm17: str) -> None:
    """With OBR-7 and OBX-14 empty, Vigil takes the collection time from SPM-17 (specimen
    collection date/time, ORU^R01 SPECIMEN group of v2.5.1). When SPM-17 is in 2099 or 1850,
    the ERR names OBR-7 (OBR^1^7 or OBX^1^14, with "OBR-7" in the text), a field the
    message left empty. Expected: ERR-2 SPM^1^17 (HL7 v2.5.1 2.15.5 ERL)."""
    message = _oru(HB, f"SPM|1|||BLD|||||||||||||{spm17}", obr_time="")
    assert [loc for loc, _ in _errs(_read(message))] == ["SPM^1^17"]


def test_a_collection_time_hours_ahead_with_an_explicit_offset_is_refused() -> None:
    """OBX-14 20261121060000+0000 is an absolute instant (HL7 v2.5.1 DTM with its offset):
    21 hours after Vigil received the message. No time-zone confusion can explain it (the
    offset is explicit); a specimen cannot be collected after it was analysed and sent. The
    24-hour clock-skew allowance, meant for times without an offset, lets it through with
    AA and it becomes the subject's latest result. Expected: AE with ERR OBX^1^14, as for
    2099."""
    outcome = _read(_oru(f"{HB}|||20261121060000+0000"))
    assert outcome.ack_code == "AE"
    assert [loc for loc, _ in _errs(outcome)] == ["OBX^1^14"]


@pytest.mark.parametrize("birth", ["1985", "1985-04"])
def test_a_fhir_birth_date_of_year_or_month_precision_is_not_read_as_unix_seconds(
    birth: str,
) -> None:
    """FHIR R4 ``date`` is YYYY, YYYY-MM or YYYY-MM-DD; de-identified trial feeds often
    send the birth year only. Vigil reads "1985" as 1985 seconds after 1970-01-01 and
    refuses the Patient with "Datetimes provided to dates should have zero time" ("1985-04":
    "input is too short"), so the subject stays unknown and its site is never told of its
    signals. Expected (item 11: a partial date is placed at its precision): the subject
    registered with the birth date at its precision (the age it gives judged
    conservatively), or refused with a reason that names the precision, not Unix time."""
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": f"urn:vigil:study:{STUDY}", "value": "01-009"}],
        "gender": "female",
        "birthDate": birth,
        "managingOrganization": {"reference": "Organization/PKUPH-01"},
    }
    event, issues = patient_event(patient, study_id=STUDY)
    assert event is not None or all("precision" in i.diagnostics for i in issues), issues


# --- guards (pass now; kept because a plausibility check must never swallow these) -------


@pytest.mark.parametrize(
    ("obx", "expected"),
    [
        ("OBX|1|NM|718-7^Hemoglobin^LN||3.0|g/dL|12.0-16.0|LL|||F", "raised anaemia-hb-le-9 g3"),
        ("OBX|1|NM|777-3^Platelets^LN||2|10*9/L|125-350|LL|||F",
         "raised thrombocytopenia-lt-75 g4"),
        ("OBX|1|NM|751-8^Neutrophils^LN||0.01|10*9/L|1.8-6.3|LL|||F",
         "raised neutropenia-anc-lt-1-5 g4"),
    ],
)  # fmt: skip
def test_guard_critical_but_possible_values_still_alert_through_hl7(
    obx: str, expected: str
) -> None:
    """Guard: Hb 3.0 g/dL, platelets 2 x 10^9/L and neutrophils 0.01 x 10^9/L are
    critical, not impossible (CTCAE v5.0 grades 3-4): AA without a warning, and alerted."""
    outcome = _read(_oru(obx))
    assert (outcome.ack_code, _errs(outcome)) == ("AA", [])
    assert _judge(_labs(outcome)) == [expected]
