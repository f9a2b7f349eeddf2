"""Change from baseline: a result after Day 0 against the subject's baseline, as a ratio,
a percentage or an absolute difference (pure).
"""

from __future__ import annotations

import functools
import uuid
from decimal import Decimal

from services.safety_rules.domain.conditions.grading import grade_of
from services.safety_rules.domain.conditions.lab_values import (
    candidate_results,
    lab_limits,
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
    judge_each_entry,
    lab_point,
    shown_number,
)
from services.safety_rules.domain.history import LabEntry, SubjectHistory
from services.safety_rules.domain.rule_kinds import BaselineChangeRule
from services.safety_rules.domain.rule_terms import certainly
from shared.analytes import UnitNotConvertible, analyte_for
from shared.plausibility import implausible_reference_range


def judge_change_from_baseline(
    rule: BaselineChangeRule, history: SubjectHistory, only: set[uuid.UUID] | None = None
) -> Judged:
    """Whether each result after Day 0 has changed from the subject's baseline (the last
    result on or before Day 0) by the rule's ratio, percentage or absolute amount; without a
    baseline the rule may judge the result against its laboratory's ULN instead
    (``without_baseline: uln``), and the missing baseline is a ``missing-input`` problem.
    ``only`` judges just those new results."""
    if history.enrolment is None:
        return [], []
    points: list[Point] = []
    problems: list[Problem] = []
    day0 = history.day0
    for codes in _by_analyte(rule.loinc_codes):
        code = codes[0]
        entries = history.results(*codes)
        first = next((e for e in entries if e.result.value is not None), None)
        if day0 is None:
            if first is not None:
                problems.append(
                    Problem(
                        "missing-input",
                        f"rule {rule.id} compares with baseline, but the subject's Day 0 is not "
                        "known (enrol the subject with day0)",
                        first.event_id,
                        rule.id,
                    )
                )
            continue
        baseline = history.baseline(code)
        if baseline is None:
            first_after = next(
                (e for e in entries if e.result.value is not None and e.at.date() > day0), None
            )
            if first_after is not None:
                meanwhile = (
                    "; a result with its laboratory's ULN is judged as a multiple of it meanwhile"
                    if rule.without_baseline == "uln"
                    else ""
                )
                problems.append(
                    Problem(
                        "missing-input",
                        f"rule {rule.id}: no {analyte_label(first_after)} result on or before "
                        f"Day 0 ({day0.isoformat()}) to serve as baseline{meanwhile}",
                        first_after.event_id,
                        rule.id,
                    )
                )
            if rule.without_baseline == "uln":
                after = [
                    e
                    for e in numeric_results(candidate_results(history, codes, only))
                    if e.at.date() > day0
                ]
                judged = judge_each_entry(
                    after,
                    functools.partial(_keyed, (id(rule), "without-baseline")),
                    functools.partial(_uln_point, rule),
                )
                points += judged[0]
                problems += judged[1]
            continue
        try:
            base = value_in(baseline, rule.unit)
        except UnitNotConvertible:
            continue
        if base == 0 and rule.change != "absolute":
            continue
        after = [
            e
            for e in numeric_results(candidate_results(history, codes, only))
            if e.at.date() > day0
        ]
        judged = judge_each_entry(
            after,
            functools.partial(_keyed, (id(rule), baseline.event_id)),
            functools.partial(_change_point, rule, baseline, base),
        )
        points += judged[0]
        problems += judged[1]
    return points, problems


def _change_point(
    rule: BaselineChangeRule, baseline: LabEntry, base: Decimal, entry: LabEntry
) -> EntryJudgement:
    try:
        value = value_in(entry, rule.unit)
    except UnitNotConvertible:
        return None, ()
    if rule.change == "ratio":
        amount, text = value / base, f"{shown_number(value / base)} x baseline"
    elif rule.change == "percent":
        amount = (value - base) / base * 100
        text = f"{shown_number(amount, '0.1')} % from baseline"
    else:
        amount, text = value - base, f"{shown_number(value - base)} {rule.unit} from baseline"
    comparator = entry.result.comparator
    quantities = _quantities(entry, value, base)
    holds = certainly(amount, comparator, rule.operator, rule.amount)
    if holds is None:  # the change is monotone in the value: censored the same way
        return None, (censored_problem(rule, entry, rule.describe()),)
    set_aside: tuple[Problem, ...] = ()
    if holds and _reads_uln(rule) and implausible_reference_range(entry.result) is not None:
        set_aside = (
            Problem(
                "reference-range-implausible",
                f"{analyte_label(entry)} collected {entry.result.collected_at.isoformat()} came "
                f"with a reference range that cannot be right "
                f"({implausible_reference_range(entry.result)}), which is set aside: rule "
                f"{rule.id} graded it on its baseline alone",
                entry.event_id,
                rule.id,
            ),
        )
    return lab_point(
        rule,
        entry,
        holds=holds,
        grade=grade_of(rule.grading, quantities, comparator),
        value=value,
        unit=rule.unit,
        comparison=f"{text}, rule {rule.describe()}",
        extra={
            "baseline": f"{shown_number(base)} {rule.unit} collected {baseline.at.isoformat()}",
            "change": text,
            **(
                {f"{analyte_label(entry)}/ULN": shown_number(uln)}
                if (uln := quantities["uln"])
                else {}
            ),
        },
        input_ids=(entry.event_id, baseline.event_id),
    ), set_aside


def _uln_point(rule: BaselineChangeRule, entry: LabEntry) -> EntryJudgement:
    """A result with no baseline to compare with, as a multiple of its laboratory's ULN
    against the rule's amount (``without_baseline: uln``); none without a usable ULN (the
    missing baseline is raised already)."""
    result = entry.result
    high = lab_limits(result)[1]
    if result.value is None or high is None or high <= 0:
        return None, ()
    try:
        value = value_in(entry, rule.unit)
    except UnitNotConvertible:
        return None, ()
    ratio = result.value / high
    comparator = result.comparator
    holds = certainly(ratio, comparator, rule.operator, rule.amount)
    if holds is None:
        return None, (
            censored_problem(rule, entry, f"{rule.operator} {shown_number(rule.amount)} x ULN"),
        )
    quantities: dict[str, Decimal | None] = {"value": value, "baseline": None, "uln": ratio}
    text = (
        f"{shown_number(ratio)} x ULN (no baseline on or before Day 0: judged on the laboratory's "
        f"ULN), rule {rule.describe()}"
    )
    return lab_point(
        rule,
        entry,
        holds=holds,
        grade=grade_of(rule.grading, quantities, comparator) if holds else None,
        value=value,
        unit=rule.unit,
        comparison=text,
        extra={
            "baseline": "none on or before Day 0",
            f"{analyte_label(entry)}/ULN": shown_number(ratio),
        },
    ), ()


def _reads_uln(rule: BaselineChangeRule) -> bool:
    """Whether the rule's grading reads the laboratory's ULN (CTCAE Creatinine increased)."""
    grading = rule.grading
    if grading is None:
        return False
    bands = (*grading.bands, *grading.abnormal_baseline_bands)
    return any((band.basis or grading.basis) == "uln" for band in bands)


def _quantities(entry: LabEntry, value: Decimal, base: Decimal) -> dict[str, Decimal | None]:
    """What a band may be read against: the value, its multiple of baseline, and its
    multiple of its own laboratory's ULN (both in the unit the result was sent in), so a
    grading with bands on both bases (CTCAE Creatinine increased) takes the worse."""
    result = entry.result
    high = lab_limits(result)[1]  # none from a range that cannot be right
    return {
        "value": value,
        "baseline": value / base if base else None,
        "uln": result.value / high if result.value is not None and high and high > 0 else None,
    }


def _by_analyte(codes: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The rule's codes grouped by analyte (one baseline serves every code of an
    analyte), in the rule's order; a code Vigil does not know stands alone."""
    groups: dict[str, list[str]] = {}
    for code in codes:
        analyte = analyte_for(code)
        groups.setdefault(analyte.name if analyte else code, []).append(code)
    return [tuple(group) for group in groups.values()]


def _keyed(key: tuple[object, ...], entry: LabEntry) -> tuple[object, ...]:
    return key
