"""Creatinine clearance: measured, or estimated by Cockcroft-Gault from serum creatinine,
age, sex and the nearest body weight (pure).
"""

from __future__ import annotations

import functools
import uuid
from datetime import date, datetime
from decimal import Decimal

from services.safety_rules.domain.conditions.grading import grade_of
from services.safety_rules.domain.conditions.lab_values import (
    candidate_results,
    numeric_results,
    value_in,
)
from services.safety_rules.domain.conditions.points import (
    EntryJudgement,
    Judged,
    Point,
    Problem,
    analyte_label,
    censored_problem,
    lab_point,
    memoised_judgement,
    shown_number,
)
from services.safety_rules.domain.history import LabEntry, SubjectHistory
from services.safety_rules.domain.rule_kinds import CreatinineClearanceRule
from services.safety_rules.domain.rule_terms import certainly
from shared.analytes import LOINC_NAMES, UnitNotConvertible
from shared.events import Sex, SubjectEnrolled
from shared.plausibility import ADULT_AGE_YEARS, age_years, implausible_adult_weight


def creatinine_clearance_cockcroft_gault(
    age: int,
    sex: Sex,
    weight_kg: Decimal,
    creatinine_mg_dl: Decimal,
    *,
    female_factor: Decimal = Decimal("0.85"),
) -> Decimal:
    """Creatinine clearance in mL/min estimated by Cockcroft-Gault (1976):
    ``(140 - age) x weight_kg / (72 x creatinine_mg_dl)``, times ``female_factor`` for any sex
    but male (a sex other than female or male, or unknown, takes the lower, more alerting
    estimate). Raises ValueError for a creatinine that is not above zero."""
    if creatinine_mg_dl <= 0:
        raise ValueError(f"serum creatinine must be above 0 mg/dL, not {creatinine_mg_dl}")
    factor = female_factor if sex != Sex.MALE else Decimal(1)
    return Decimal(140 - age) * weight_kg / (Decimal(72) * creatinine_mg_dl) * factor


def _age(birth: date, at: datetime) -> int:
    day = at.date()
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def _nearest_weight(
    history: SubjectHistory, rule: CreatinineClearanceRule, at: datetime
) -> tuple[Decimal, datetime, uuid.UUID, str] | None:
    candidates = [
        (value, entry.at, entry.event_id, "weight result")
        for entry, value in _weights(history, rule)
        if value is not None
    ]
    enrolment = history.enrolment_weight()
    if enrolment is not None and _enrolment_weight_problem(history) is None:
        candidates.append((*enrolment, "enrolment record"))
    if not candidates:
        return None
    return min(candidates, key=lambda c: (abs((c[1] - at).total_seconds()), c[1]))


def _enrolment_weight_problem(history: SubjectHistory) -> str | None:
    """Why the enrolment weight cannot be this adult's (at Day 0, else today), or None."""
    enrolment = history.enrolment
    if enrolment is None or enrolment.weight_kg is None:
        return None
    weighed = history.enrolment_weight()
    assert weighed is not None
    detail = implausible_adult_weight(enrolment.weight_kg, enrolment.birth_date, weighed[1].date())
    return None if detail is None else f"the enrolment record's {detail}"


def _weights(
    history: SubjectHistory, rule: CreatinineClearanceRule
) -> list[tuple[LabEntry, Decimal | None]]:
    """Every body weight result with its value in kg (None: its unit does not convert)."""
    weights: list[tuple[LabEntry, Decimal | None]] = []
    for entry in numeric_results(history.results(*rule.weight_codes)):
        try:
            weights.append((entry, value_in(entry, "kg")))
        except UnitNotConvertible:
            weights.append((entry, None))
    return weights


def _weights_set_aside(
    history: SubjectHistory,
    rule: CreatinineClearanceRule,
    at: datetime,
    used: tuple[Decimal, datetime, uuid.UUID, str] | None,
) -> list[Problem]:
    """A body weight nearer in time than the one used that could not be read in kg: the
    rule says it set it aside (the estimate rests on an older weight), never in silence."""
    used_gap = abs((used[1] - at).total_seconds()) if used is not None else None
    return [
        Problem(
            "unit-not-convertible",
            f"rule {rule.id}: {analyte_label(entry)} collected {entry.at.isoformat()} is the body "
            "weight nearest in time but its unit does not convert to kg, so Cockcroft-Gault "
            + (f"used the {used[3]} of {used[1].isoformat()}" if used else "had no weight")
            + "; ask for the weight in kg",
            entry.event_id,
            rule.id,
        )
        for entry, value in _weights(history, rule)
        if value is None and (used_gap is None or abs((entry.at - at).total_seconds()) < used_gap)
    ]


def judge_creatinine_clearance(
    rule: CreatinineClearanceRule, history: SubjectHistory, only: set[uuid.UUID] | None = None
) -> Judged:
    """Whether the subject's creatinine clearance, measured or estimated by Cockcroft-Gault
    from each serum creatinine (see ``creatinine_clearance_cockcroft_gault``) with the age at
    collection, the sex and the body weight nearest in time, meets the rule's threshold.
    A missing weight, an implausible enrolment weight or a child's age is a problem, never a
    silent estimate. ``only`` judges just those new results."""
    points: list[Point] = []
    problems: list[Problem] = []
    for entry in numeric_results(candidate_results(history, rule.measured_codes, only)):
        try:
            value = value_in(entry, rule.unit)
        except UnitNotConvertible:
            continue
        comparator = entry.result.comparator
        holds = certainly(value, comparator, rule.operator, rule.threshold)
        if holds is None:
            problems.append(censored_problem(rule, entry, rule.describe()))
            continue
        points.append(
            lab_point(
                rule,
                entry,
                holds=holds,
                grade=grade_of(rule.grading, {"value": value}, comparator),
                value=value,
                unit=rule.unit,
                comparison=f"{_method(entry)} creatinine clearance {comparator or ''}"
                f"{shown_number(value)} {rule.unit}, rule {rule.describe()}",
                extra={"method": _method(entry)},
            )
        )
    enrolment = history.enrolment
    if enrolment is None:
        return points, problems
    assert history.enrolment_fact is not None
    enrolled_by = history.enrolment_fact.event_id
    creatinines = numeric_results(candidate_results(history, rule.creatinine_codes, only))
    if creatinines and (weight_problem := _enrolment_weight_problem(history)) is not None:
        problems.append(Problem("implausible-value", weight_problem, enrolled_by, rule.id))
    for entry in creatinines:
        age = age_years(enrolment.birth_date, entry.at.date())
        if age < ADULT_AGE_YEARS:
            # Cockcroft-Gault is valid in adults only; in an adult trial a child's age is a
            # mistyped birth date, which must not silently raise the estimate
            problems.append(
                Problem(
                    "implausible-time",
                    f"rule {rule.id}: the subject's birth date gives an age of {age} years "
                    f"(below {ADULT_AGE_YEARS}) at a creatinine's collection: Cockcroft-Gault "
                    "is valid in adults only and was not computed; ask the site to check the "
                    "birth date",
                    enrolled_by,
                    rule.id,
                )
            )
            continue
        weight = _nearest_weight(history, rule, entry.at)
        problems += _weights_set_aside(history, rule, entry.at, weight)
        if weight is None:
            problems.append(
                Problem(
                    "missing-input",
                    f"rule {rule.id}: no body weight (enrolment or a body weight result) to "
                    "compute creatinine clearance by Cockcroft-Gault",
                    entry.event_id,
                    rule.id,
                )
            )
            continue
        point, found = memoised_judgement(
            entry,
            (id(rule), weight[2], enrolled_by),
            functools.partial(_cockcroft_gault_point, rule, enrolment, entry, weight),
        )
        problems += found
        if point is not None:
            points.append(point)
    return points, problems


def _method(entry: LabEntry) -> str:
    """How the laboratory obtained the clearance it reports: measured (timed urine), or
    predicted by a formula (LOINC 35591-7 'Creatinine renal clearance predicted by
    Cockcroft-Gault formula'), as the code's LOINC long common name says."""
    name = LOINC_NAMES.get(entry.result.loinc_code or "", "")
    return "predicted by the laboratory (Cockcroft-Gault)" if "predicted" in name else "measured"


def _cockcroft_gault_point(
    rule: CreatinineClearanceRule,
    enrolment: SubjectEnrolled,
    entry: LabEntry,
    weight: tuple[Decimal, datetime, uuid.UUID, str],
) -> EntryJudgement:
    try:
        creatinine = value_in(entry, "mg/dL")
    except UnitNotConvertible:
        return None, ()
    if creatinine <= 0:
        return None, ()
    kg, weighed_at, weight_id, weight_source = weight
    age = _age(enrolment.birth_date, entry.at)
    female = enrolment.sex != Sex.MALE
    clearance = creatinine_clearance_cockcroft_gault(
        age, enrolment.sex, kg, creatinine, female_factor=rule.female_factor
    )
    flipped = _flip(entry.result.comparator)  # CrCl falls as creatinine rises
    holds = certainly(clearance, flipped, rule.operator, rule.threshold)
    if holds is None:
        return None, (censored_problem(rule, entry, f"{rule.describe()} (Cockcroft-Gault)"),)
    sex_note = {Sex.FEMALE: "female", Sex.MALE: "male"}.get(
        enrolment.sex,
        f"{enrolment.sex.value} (x {rule.female_factor} applied: the "
        "lower, more alerting estimate)",
    )
    extra = {
        "method": "Cockcroft-Gault",
        "CrCl": f"{shown_number(clearance, '0.1')} mL/min",
        "age_years": age,
        "sex": sex_note,
        "weight_kg": f"{shown_number(kg, '0.1')} ({weight_source}, {weighed_at.isoformat()})",
        "creatinine_mg_dl": shown_number(creatinine),
        "formula": f"(140 - {age}) x {shown_number(kg, '0.1')} / (72 x {shown_number(creatinine)})"
        + (f" x {rule.female_factor}" if female else ""),
    }
    return lab_point(
        rule,
        entry,
        holds=holds,
        grade=grade_of(rule.grading, {"value": clearance}, flipped),
        value=clearance,
        unit=rule.unit,
        comparison=f"CrCl = {shown_number(clearance, '0.1')} mL/min, rule {rule.describe()}",
        extra=extra,
        input_ids=(entry.event_id, weight_id),
    ), ()


def _flip(comparator: str | None) -> str | None:
    """The comparator of ``k / x`` for a censored ``x``."""
    flipped = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
    return flipped.get(comparator) if comparator else None
