"""Each condition kind's public entry point, table by table: at, just below and just above
its threshold, in other units, with inputs missing, with limits by sex, and in each CTCAE
grade band. The rules are the study's own (studies/NCT05262686/rules.yaml)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from services.safety_rules.adapters.rule_pack_files import load_rule_packs
from services.safety_rules.domain.conditions import (
    Judged,
    creatinine_clearance_cockcroft_gault,
    judge_absolute_threshold,
    judge_adverse_event,
    judge_change_from_baseline,
    judge_coded_result,
    judge_creatinine_clearance,
    judge_hys_law,
    judge_medication,
    judge_qualitative_result,
    judge_reference_limit,
)
from services.safety_rules.domain.history import SubjectHistory
from shared.events import Sex
from tests.support.rules_harness import RECORDED_FROM, STUDY, fact
from tests.support.services import REPO

PACK = load_rule_packs(REPO / "studies")[STUDY]
SUBJECT = "01-001"
#: a man who turns 40 on T0 (2026-03-01): Cockcroft-Gault's (140 - age) is 100 at Day 1
MAN_OF_40 = {"sex": "M", "birth_date": "1986-03-01", "weight_kg": 64.8}


def rule(rule_id: str) -> Any:
    return next(r for r in PACK.rules if r.id == rule_id)


def history(*specs: dict[str, Any], enrol: dict[str, Any] | None = None) -> SubjectHistory:
    """A subject's history from case-table facts (days from T0), enrolled unless ``enrol``
    is None (``{}``: the harness's woman, 60 kg, Day 0 at T0)."""
    payloads = [fact({"enrol": enrol}, SUBJECT)] if enrol is not None else []
    payloads += [fact(spec, SUBJECT) for spec in specs]
    subject = SubjectHistory(STUDY, SUBJECT)
    for version, payload in enumerate(payloads, start=1):
        subject.apply(payload.event_type, payload, uuid.uuid4(), RECORDED_FROM, version)
    return subject


@dataclass(frozen=True)
class Outcome:
    """What a judgement says, as a table states it: each point's holding and grade (a grade
    only on a finding), and the data-quality issues raised."""

    points: list[tuple[bool, int | None]]
    issues: list[str]


def outcome(judged: Judged) -> Outcome:
    points, problems = judged
    return Outcome(
        [(p.holds, p.grade if p.holds else None) for p in sorted(points, key=lambda p: p.at)],
        sorted(problem.issue for problem in problems),
    )


def lab(loinc: str, value: object, unit: str | None, at: float = 1, **more: Any) -> dict[str, Any]:
    return {"lab": {"loinc": loinc, "value": value, "unit": unit, "at": at, **more}}


HELD, NOT_HELD = True, False

# -- absolute threshold --------------------------------------------------------------------

ANAEMIA = [  # haemoglobin <= 9 g/dL; CTCAE Anemia grade 2 below 10, grade 3 below 8
    ("at 9 g/dL holds, grade 2", lab("718-7", 9, "g/dL"), [(HELD, 2)], []),
    ("just above: 9.1 g/dL", lab("718-7", 9.1, "g/dL"), [(NOT_HELD, None)], []),
    ("just below: 8.9 g/dL", lab("718-7", 8.9, "g/dL"), [(HELD, 2)], []),
    ("8 g/dL is still grade 2", lab("718-7", 8, "g/dL"), [(HELD, 2)], []),
    ("7.9 g/dL is grade 3", lab("718-7", 7.9, "g/dL"), [(HELD, 3)], []),
    ("90 g/L is 9 g/dL", lab("718-7", 90, "g/L"), [(HELD, 2)], []),
    ("91 g/L is above", lab("718-7", 91, "g/L"), [(NOT_HELD, None)], []),
    ("5.5 mmol/L is 8.86 g/dL", lab("718-7", 5.5, "mmol/L"), [(HELD, 2)], []),
    ("censored <9 is surely at or below", lab("718-7", "<9", "g/dL"), [(HELD, 2)], []),
    ("censored <9.5 may be either", lab("718-7", "<9.5", "g/dL"), [], ["censored-result"]),
    ("no value: nothing to judge", lab("718-7", None, "g/dL", text="haemolysed"), [], []),
    ("no unit: not judged here (ingest raised it)", lab("718-7", 8, None), [], []),
]

NEUTROPENIA = [  # ANC < 1.5 x10^9/L; grade 2 below 1.5, grade 3 below 1.0, grade 4 below 0.5
    ("at 1.5 does not hold (strict)", lab("751-8", 1.5, "10*9/L"), [(NOT_HELD, None)], []),
    ("just below: 1.49, grade 2", lab("751-8", 1.49, "10*9/L"), [(HELD, 2)], []),
    ("1.0 is grade 2", lab("751-8", 1.0, "10*9/L"), [(HELD, 2)], []),
    ("0.99 is grade 3", lab("751-8", 0.99, "10*9/L"), [(HELD, 3)], []),
    ("0.5 is grade 3", lab("751-8", 0.5, "10*9/L"), [(HELD, 3)], []),
    ("0.49 is grade 4", lab("751-8", 0.49, "10*9/L"), [(HELD, 4)], []),
    ("1490 /uL is 1.49 x10^9/L", lab("751-8", 1490, "/uL"), [(HELD, 2)], []),
    ("censored <0.5 is surely grade 4", lab("751-8", "<0.5", "10*9/L"), [(HELD, 4)], []),
]


@pytest.mark.parametrize(
    ("rule_id", "spec", "points", "issues"),
    [("anaemia-hb-le-9", *case[1:]) for case in ANAEMIA]
    + [("neutropenia-anc-lt-1-5", *case[1:]) for case in NEUTROPENIA],
    ids=[f"anaemia: {c[0]}" for c in ANAEMIA] + [f"neutropenia: {c[0]}" for c in NEUTROPENIA],
)
def test_judge_absolute_threshold(
    rule_id: str, spec: dict[str, Any], points: list[Any], issues: list[str]
) -> None:
    judged = judge_absolute_threshold(rule(rule_id), history(spec, enrol={}))

    assert outcome(judged) == Outcome(points, issues)


# -- reference-limit multiple --------------------------------------------------------------

ALT_BY_ULN = [  # ALT > 3 x ULN; CTCAE grade 2 above 3, grade 3 above 5, grade 4 above 20
    (
        "at 3 x ULN does not hold",
        [lab("1742-6", 120, "U/L", ref="7-40")],
        {},
        [(NOT_HELD, None)],
        [],
    ),
    ("just above 3 x ULN, grade 2", [lab("1742-6", 121, "U/L", ref="7-40")], {}, [(HELD, 2)], []),
    ("at 5 x ULN still grade 2", [lab("1742-6", 200, "U/L", ref="7-40")], {}, [(HELD, 2)], []),
    ("above 5 x ULN grade 3", [lab("1742-6", 201, "U/L", ref="7-40")], {}, [(HELD, 3)], []),
    ("above 20 x ULN grade 4", [lab("1742-6", 801, "U/L", ref="7-40")], {}, [(HELD, 4)], []),
    (
        "no range: a woman's fallback ULN 25 U/L",
        [lab("1742-6", 76, "U/L")],
        {"sex": "F"},
        [(HELD, 2)],
        ["reference-range-missing"],
    ),
    (
        "no range: a man's fallback ULN 33 U/L",
        [lab("1742-6", 76, "U/L")],
        {"sex": "M"},
        [(NOT_HELD, None)],
        ["reference-range-missing"],
    ),
    (
        "censored >150 is surely above 3 x ULN, graded only as far as certain",
        [lab("1742-6", ">150", "U/L", ref="7-40")],
        {},
        [(HELD, 2)],
        [],
    ),
    (
        "censored <130 may be either",
        [lab("1742-6", "<130", "U/L", ref="7-40")],
        {},
        [],
        ["censored-result"],
    ),
    (
        "a baseline above the ULN grades on the multiple of baseline",
        [lab("1742-6", 60, "U/L", at=-1, ref="7-40"), lab("1742-6", 130, "U/L", at=5, ref="7-40")],
        {},
        [(NOT_HELD, None), (HELD, 1)],
        [],
    ),
]

TSH_BY_LLN = [  # TSH < 1 x LLN
    (
        "at the LLN does not hold",
        [lab("3016-3", 0.4, "m[IU]/L", ref="0.4-4.0")],
        {},
        [(NOT_HELD, None)],
        [],
    ),
    (
        "just below the LLN holds",
        [lab("3016-3", 0.39, "m[IU]/L", ref="0.4-4.0")],
        {},
        [(HELD, None)],
        [],
    ),
    (
        "no range: the pack's fallback LLN 0.4",
        [lab("3016-3", 0.3, "m[IU]/L")],
        {},
        [(HELD, None)],
        ["reference-range-missing"],
    ),
]


@pytest.mark.parametrize(
    ("rule_id", "specs", "enrol", "points", "issues"),
    [("liver-alt-ast-gt-3-uln", *case[1:]) for case in ALT_BY_ULN]
    + [("thyroid-tsh-below-lln", *case[1:]) for case in TSH_BY_LLN],
    ids=[f"ALT: {c[0]}" for c in ALT_BY_ULN] + [f"TSH: {c[0]}" for c in TSH_BY_LLN],
)
def test_judge_reference_limit(
    rule_id: str,
    specs: list[dict[str, Any]],
    enrol: dict[str, Any],
    points: list[Any],
    issues: list[str],
) -> None:
    judged = judge_reference_limit(rule(rule_id), history(*specs, enrol=enrol))

    assert outcome(judged) == Outcome(points, issues)


# -- change from baseline ------------------------------------------------------------------

BASELINE_CREATININE = lab("2160-0", 1.0, "mg/dL", at=-1, ref="0.5-1.1")
CREATININE = [  # creatinine > 1.5 x baseline; CTCAE grade 2 above 1.5, grade 3 above 3
    (
        "at 1.5 x baseline does not hold",
        [BASELINE_CREATININE, lab("2160-0", 1.5, "mg/dL", at=5)],
        {},
        [(NOT_HELD, None)],
        [],
    ),
    (
        "just above 1.5 x baseline, grade 2",
        [BASELINE_CREATININE, lab("2160-0", 1.51, "mg/dL", at=5)],
        {},
        [(HELD, 2)],
        [],
    ),
    (
        "above 3 x baseline, grade 3",
        [BASELINE_CREATININE, lab("2160-0", 3.01, "mg/dL", at=5)],
        {},
        [(HELD, 3)],
        [],
    ),
    (
        "a baseline in umol/L (88.4 = 1.0 mg/dL)",
        [lab("2160-0", 88.4, "umol/L", at=-1), lab("2160-0", 1.6, "mg/dL", at=5)],
        {},
        [(HELD, 2)],
        [],
    ),
    (
        "no baseline: judged on the laboratory's ULN meanwhile, and the baseline asked for",
        [lab("2160-0", 1.6, "mg/dL", at=5, ref="0.5-1.0")],
        {},
        [(HELD, 2)],
        ["missing-input"],
    ),
    (
        "no Day 0: nothing to compare, which is said",
        [BASELINE_CREATININE, lab("2160-0", 3, "mg/dL", at=5)],
        {"day0": False},
        [],
        ["missing-input"],
    ),
    (
        "not enrolled: nothing judged",
        [BASELINE_CREATININE, lab("2160-0", 3, "mg/dL", at=5)],
        None,
        [],
        [],
    ),
]

BASELINE_IGG = lab("2465-3", 10, "g/L", at=-1)
IGG = [  # IgG fall of 50 % or more from baseline
    (
        "a fall of exactly 50 % holds",
        [BASELINE_IGG, lab("2465-3", 5, "g/L", at=5)],
        {},
        [(HELD, None)],
        [],
    ),
    (
        "a fall of 49 % does not",
        [BASELINE_IGG, lab("2465-3", 5.1, "g/L", at=5)],
        {},
        [(NOT_HELD, None)],
        [],
    ),
    (
        "a fall of 51 % holds",
        [BASELINE_IGG, lab("2465-3", 4.9, "g/L", at=5)],
        {},
        [(HELD, None)],
        [],
    ),
]


@pytest.mark.parametrize(
    ("rule_id", "specs", "enrol", "points", "issues"),
    [("creatinine-gt-1-5x-baseline", *case[1:]) for case in CREATININE]
    + [("igg-fall-ge-50pct-from-baseline", *case[1:]) for case in IGG],
    ids=[f"creatinine: {c[0]}" for c in CREATININE] + [f"IgG: {c[0]}" for c in IGG],
)
def test_judge_change_from_baseline(
    rule_id: str,
    specs: list[dict[str, Any]],
    enrol: dict[str, Any] | None,
    points: list[Any],
    issues: list[str],
) -> None:
    judged = judge_change_from_baseline(rule(rule_id), history(*specs, enrol=enrol))

    assert outcome(judged) == Outcome(points, issues)


# -- creatinine clearance ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "sex", "weight_kg", "creatinine_mg_dl", "expected"),
    [
        (40, Sex.MALE, "72", "1.0", Decimal(100)),
        (40, Sex.FEMALE, "72", "1.0", Decimal(85)),
        (40, Sex.UNKNOWN, "72", "1.0", Decimal(85)),
        (40, Sex.OTHER, "72", "1.0", Decimal(85)),
        (40, Sex.MALE, "64.8", "3.0", Decimal(30)),
        (60, Sex.MALE, "72", "2.0", Decimal(40)),
    ],
    ids=[
        "man: (140 - 40) x 72 / (72 x 1.0)",
        "woman: x 0.85",
        "unknown sex: the lower estimate",
        "other sex: the lower estimate",
        "exactly 30 mL/min",
        "older and higher creatinine",
    ],
)
def test_creatinine_clearance_cockcroft_gault(
    age: int, sex: Sex, weight_kg: str, creatinine_mg_dl: str, expected: Decimal
) -> None:
    clearance = creatinine_clearance_cockcroft_gault(
        age, sex, Decimal(weight_kg), Decimal(creatinine_mg_dl)
    )

    assert clearance == expected


@pytest.mark.parametrize("creatinine", ["0", "-1"], ids=["zero", "negative"])
def test_cockcroft_gault_needs_a_creatinine_above_zero(creatinine: str) -> None:
    with pytest.raises(ValueError, match="serum creatinine must be above 0 mg/dL"):
        creatinine_clearance_cockcroft_gault(40, Sex.MALE, Decimal(70), Decimal(creatinine))


CLEARANCE = [  # CrCl <= 30 mL/min; CTCAE grade 2 below 60, grade 3 below 30, grade 4 below 15
    ("at 30 mL/min holds, grade 2", [lab("2160-0", 3.0, "mg/dL")], MAN_OF_40, [(HELD, 2)], []),
    (
        "just above: creatinine 2.99",
        [lab("2160-0", 2.99, "mg/dL")],
        MAN_OF_40,
        [(NOT_HELD, None)],
        [],
    ),
    (
        "just below: creatinine 3.01, grade 3",
        [lab("2160-0", 3.01, "mg/dL")],
        MAN_OF_40,
        [(HELD, 3)],
        [],
    ),
    ("below 15: grade 4", [lab("2160-0", 6.5, "mg/dL")], MAN_OF_40, [(HELD, 4)], []),
    (
        "a woman's estimate is 0.85 of a man's",
        [lab("2160-0", 2.7, "mg/dL")],
        {**MAN_OF_40, "sex": "F"},
        [(HELD, 3)],
        [],
    ),
    (
        "creatinine in umol/L (265.2 = 3.0 mg/dL)",
        [lab("2160-0", 265.2, "umol/L")],
        MAN_OF_40,
        [(HELD, 2)],
        [],
    ),
    (
        "censored <3.0: clearance surely above 30",
        [lab("2160-0", "<3.0", "mg/dL")],
        MAN_OF_40,
        [(NOT_HELD, None)],
        [],
    ),
    (
        "censored >3.0: clearance surely below 30",
        [lab("2160-0", ">3.0", "mg/dL")],
        MAN_OF_40,
        [(HELD, 3)],
        [],
    ),
    (
        "censored <3.1 may be either",
        [lab("2160-0", "<3.1", "mg/dL")],
        MAN_OF_40,
        [],
        ["censored-result"],
    ),
    (
        "a body weight result nearer in time than the enrolment weight",
        [lab("29463-7", 64.8, "kg", at=1), lab("2160-0", 3.0, "mg/dL", at=1)],
        {**MAN_OF_40, "weight_kg": 90},
        [(HELD, 2)],
        [],
    ),
    ("measured clearance at 30", [lab("2164-2", 30, "mL/min")], MAN_OF_40, [(HELD, 2)], []),
    ("measured clearance 31", [lab("2164-2", 31, "mL/min")], MAN_OF_40, [(NOT_HELD, None)], []),
    (
        "no weight anywhere: not estimated, which is said",
        [lab("2160-0", 3.0, "mg/dL")],
        {**MAN_OF_40, "weight_kg": None},
        [],
        ["missing-input"],
    ),
    (
        "a child's age (a mistyped birth date): not estimated",
        [lab("2160-0", 3.0, "mg/dL")],
        {**MAN_OF_40, "birth_date": "2016-01-01"},
        [],
        ["implausible-time"],
    ),
]


@pytest.mark.parametrize(
    ("specs", "enrol", "points", "issues"),
    [case[1:] for case in CLEARANCE],
    ids=[case[0] for case in CLEARANCE],
)
def test_judge_creatinine_clearance(
    specs: list[dict[str, Any]], enrol: dict[str, Any], points: list[Any], issues: list[str]
) -> None:
    judged = judge_creatinine_clearance(rule("renal-crcl-le-30"), history(*specs, enrol=enrol))

    assert outcome(judged) == Outcome(points, issues)


# -- Hy's law ------------------------------------------------------------------------------


def _liver(
    alt: object, bilirubin: object, alp: object = None, bilirubin_at: float = 1
) -> list[Any]:
    facts = [
        lab("1742-6", alt, "U/L", ref="7-40"),
        lab("1975-2", bilirubin, "mg/dL", at=bilirubin_at, ref="0.1-1.2"),
    ]
    if alp is not None:
        facts.append(lab("6768-6", alp, "U/L", ref="40-120"))
    return facts


HYS_LAW = [  # ALT or AST > 3 x ULN and total bilirubin > 2 x ULN within 30 days, no cholestasis
    ("both limbs just crossed", _liver(121, 2.41), {}, HELD, []),
    ("ALT at 3 x ULN", _liver(120, 2.41), {}, NOT_HELD, []),
    ("bilirubin at 2 x ULN", _liver(121, 2.4), {}, NOT_HELD, []),
    ("alkaline phosphatase at 2 x ULN: cholestasis", _liver(121, 2.41, alp=240), {}, NOT_HELD, []),
    ("alkaline phosphatase just below 2 x ULN", _liver(121, 2.41, alp=239), {}, HELD, []),
    (
        "bilirubin 40 days later: outside the window",
        _liver(121, 2.41, bilirubin_at=41),
        {},
        NOT_HELD,
        [],
    ),
    (
        "bilirubin 30 days later: inside the window",
        _liver(121, 2.41, bilirubin_at=31),
        {},
        HELD,
        [],
    ),
    (
        "ALT without a range, a woman: fallback ULN 25 U/L",
        [lab("1742-6", 80, "U/L"), lab("1975-2", 2.41, "mg/dL", ref="0.1-1.2")],
        {"sex": "F"},
        HELD,
        ["reference-range-missing"],
    ),
    (
        "ALT without a range, a man: fallback ULN 33 U/L",
        [lab("1742-6", 80, "U/L"), lab("1975-2", 2.41, "mg/dL", ref="0.1-1.2")],
        {"sex": "M"},
        NOT_HELD,
        ["reference-range-missing"],
    ),
]


@pytest.mark.parametrize(
    ("specs", "enrol", "holds", "issues"),
    [case[1:] for case in HYS_LAW],
    ids=[case[0] for case in HYS_LAW],
)
def test_judge_hys_law(
    specs: list[dict[str, Any]], enrol: dict[str, Any], holds: bool, issues: list[str]
) -> None:
    points, problems = judge_hys_law(rule("hys-law"), history(*specs, enrol=enrol))

    held = any(point.holds for point in points)
    assert (held, sorted({p.issue for p in problems})) == (holds, issues)


# -- adverse events ------------------------------------------------------------------------


def _ae(**fields: Any) -> dict[str, Any]:
    return {"ae": {"term": "hypotension", "meddra": "10021097", "onset": 3, **fields}}


ADVERSE_EVENTS = [
    ("sae-any", "a serious report", _ae(serious=True, criteria=["hospitalisation"]), [HELD], []),
    ("sae-any", "a report not serious", _ae(), [NOT_HELD], []),
    ("hypotension-grade-2", "at grade 2", _ae(grade=2), [HELD], []),
    ("hypotension-grade-2", "just below: grade 1", _ae(grade=1), [NOT_HELD], []),
    ("hypotension-grade-2", "grade 3", _ae(grade=3), [HELD], []),
    (
        "hypotension-grade-2",
        "severity moderate reads as grade 2",
        _ae(severity="moderate"),
        [HELD],
        [],
    ),
    ("hypotension-grade-2", "severity mild reads as grade 1", _ae(severity="mild"), [NOT_HELD], []),
    ("hypotension-grade-2", "no grade at all: asked for", _ae(), [NOT_HELD], ["missing-input"]),
    (
        "hypotension-grade-2",
        "serious without a grade: at least grade 3",
        _ae(serious=True, criteria=["hospitalisation"]),
        [HELD],
        [],
    ),
    (
        "hypotension-grade-2",
        "another event",
        _ae(term="headache", meddra="10019211", grade=3),
        [NOT_HELD],
        [],
    ),
    (
        "hypotension-grade-2",
        "an event that held and ended: a second point, not holding",
        _ae(grade=2, end=6, outcome="recovered"),
        [HELD, NOT_HELD],
        [],
    ),
    (
        "hypotension-grade-2",
        "began and ended before Day 0: medical history, not judged",
        _ae(grade=2, onset=-10, end=-5),
        [],
        ["implausible-time"],
    ),
]


@pytest.mark.parametrize(
    ("rule_id", "spec", "holds", "issues"),
    [(case[0], *case[2:]) for case in ADVERSE_EVENTS],
    ids=[f"{case[0]}: {case[1]}" for case in ADVERSE_EVENTS],
)
def test_judge_adverse_event(
    rule_id: str, spec: dict[str, Any], holds: list[bool], issues: list[str]
) -> None:
    points, problems = judge_adverse_event(rule(rule_id), history(spec, enrol={}))

    assert ([p.holds for p in points], [p.issue for p in problems]) == (holds, issues)


# -- medications ---------------------------------------------------------------------------


def _med(drug: str, dose: float, **fields: Any) -> dict[str, Any]:
    return {"med": {"drug": drug, "dose": dose, "start": 2, **fields}}


MEDICATIONS = [  # prednisone-equivalent > 10 mg/day; hydroxychloroquine > 5 mg/kg/day
    (
        "steroid-prednisone-equivalent-gt-10",
        "prednisone 10 mg/day",
        _med("prednisone", 10),
        NOT_HELD,
    ),
    (
        "steroid-prednisone-equivalent-gt-10",
        "prednisone 10.5 mg/day",
        _med("prednisone", 10.5),
        HELD,
    ),
    (
        "steroid-prednisone-equivalent-gt-10",
        "methylprednisolone 8 mg/day is 10 mg prednisone",
        _med("methylprednisolone", 8),
        NOT_HELD,
    ),
    (
        "steroid-prednisone-equivalent-gt-10",
        "methylprednisolone 9 mg/day is 11.25 mg prednisone",
        _med("methylprednisolone", 9),
        HELD,
    ),
    (
        "steroid-prednisone-equivalent-gt-10",
        "prednisone 5 mg twice a day is 10 mg/day",
        _med("prednisone", 5, freq="BID"),
        NOT_HELD,
    ),
    (
        "steroid-prednisone-equivalent-gt-10",
        "prednisone 6 mg twice a day is 12 mg/day",
        _med("prednisone", 6, freq="BID"),
        HELD,
    ),
    (
        "hydroxychloroquine-gt-5-mg-kg",
        "300 mg/day for 60 kg is 5 mg/kg",
        _med("hydroxychloroquine", 300),
        NOT_HELD,
    ),
    (
        "hydroxychloroquine-gt-5-mg-kg",
        "400 mg/day for 60 kg",
        _med("hydroxychloroquine", 400),
        HELD,
    ),
]


@pytest.mark.parametrize(
    ("rule_id", "spec", "holds"),
    [(case[0], *case[2:]) for case in MEDICATIONS],
    ids=[f"{case[0]}: {case[1]}" for case in MEDICATIONS],
)
def test_judge_medication(rule_id: str, spec: dict[str, Any], holds: bool) -> None:
    points, problems = judge_medication(rule(rule_id), history(spec, enrol={}))

    assert ([p.holds for p in points], problems) == ([holds], [])


def test_judge_medication_per_kg_without_a_weight_says_so() -> None:
    subject = history(_med("hydroxychloroquine", 400), enrol={"weight_kg": None})

    points, problems = judge_medication(rule("hydroxychloroquine-gt-5-mg-kg"), subject)

    assert (points, [p.issue for p in problems]) == ([], ["missing-input"])


# -- qualitative and coded results ---------------------------------------------------------

QUALITATIVE = [  # HIV antibody positive or indeterminate
    ("coded positive", lab("7918-6", None, None, qualitative="positive"), [(HELD, None)], []),
    ("coded negative", lab("7918-6", None, None, qualitative="negative"), [(NOT_HELD, None)], []),
    (
        "coded indeterminate",
        lab("7918-6", None, None, qualitative="indeterminate"),
        [(HELD, None)],
        [],
    ),
    ("text 'Reactive'", lab("7918-6", None, None, text="Reactive"), [(HELD, None)], []),
    ("text 'Non-reactive'", lab("7918-6", None, None, text="Non-reactive"), [(NOT_HELD, None)], []),
    (
        "text unreadable but flagged abnormal",
        lab("7918-6", None, None, text="see report", flags=["A"]),
        [(HELD, None)],
        [],
    ),
    (
        "at the cut-off (S/CO 1.0, range 0-1)",
        lab("7918-6", 1.0, "{s_co_ratio}", ref="0-1"),
        [(HELD, None)],
        [],
    ),
    (
        "just below the cut-off",
        lab("7918-6", 0.99, "{s_co_ratio}", ref="0-1"),
        [(NOT_HELD, None)],
        [],
    ),
    ("unreadable text", lab("7918-6", None, None, text="see comment"), [], ["result-unreadable"]),
]


@pytest.mark.parametrize(
    ("spec", "points", "issues"),
    [case[1:] for case in QUALITATIVE],
    ids=[case[0] for case in QUALITATIVE],
)
def test_judge_qualitative_result(
    spec: dict[str, Any], points: list[Any], issues: list[str]
) -> None:
    judged = judge_qualitative_result(rule("hiv-antibody-positive"), history(spec, enrol={}))

    assert outcome(judged) == Outcome(points, issues)


CODED = [  # NYHA class III or IV on an assessment
    ("class III", "Class III", [(HELD, None)], []),
    ("NYHA IV", "NYHA IV", [(HELD, None)], []),
    ("class II", "Class II", [(NOT_HELD, None)], []),
    (
        "NYHA IV in full-width letters (a Chinese input method)",
        "\uff2e\uff39\uff28\uff21 \uff29\uff36",
        [(HELD, None)],
        [],
    ),
    ("an answer the rule does not read", "unknown", [], ["result-unreadable"]),
]


@pytest.mark.parametrize(
    ("text", "points", "issues"),
    [case[1:] for case in CODED],
    ids=[case[0] for case in CODED],
)
def test_judge_coded_result(text: str, points: list[Any], issues: list[str]) -> None:
    subject = history(lab("88020-3", None, None, text=text), enrol={})

    judged = judge_coded_result(rule("heart-failure-nyha-3-4-assessment"), subject)

    assert outcome(judged) == Outcome(points, issues)


def test_every_kind_of_the_pack_has_a_table_here() -> None:
    kinds = {type(r).__name__ for r in PACK.rules}
    tabled: set[str] = {
        "AbsoluteThresholdRule",
        "ReferenceLimitRule",
        "BaselineChangeRule",
        "CreatinineClearanceRule",
        "HysLawRule",
        "AdverseEventRule",
        "MedicationRule",
        "QualitativeRule",
        "CodedResultRule",
    }
    assert kinds <= tabled
