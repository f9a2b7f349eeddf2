"""Absolute threshold: a result (or a count derived from a percentage) against a fixed
value in the rule's unit (pure).

Two things a laboratory says besides its number are read too. A rule that takes the
laboratory's cut-off (``laboratory_limit``) and got no range takes the laboratory's flag
instead: a result flagged above its high limit (HL7 v2.5.1 table 0078 / FHIR R4
ObservationInterpretation H, HH, HU, or A, AA abnormal) is above that laboratory's cut-off,
whatever the number (a sensitive hCG assay flags 4.9 mIU/mL). And a result below an
assay's quantitation limit whose text says the target was detected ("<20 IU/mL, Detected",
as real-time PCR reports it) lies above zero: it meets a rule on any amount above zero
(HBV DNA detected), instead of being asked for an exact value the assay cannot give;
one whose text says not detected does not meet it.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import replace
from decimal import Decimal

from services.safety_rules.domain.conditions.grading import (
    baseline_key,
    grade_of,
    has_abnormal_baseline,
    lab_quantities,
)
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
    as_reported,
    censored_problem,
    judge_each_entry,
    lab_point,
    memoised_judgement,
    shown_number,
)
from services.safety_rules.domain.history import LabEntry, SubjectHistory
from services.safety_rules.domain.rule_kinds import AbsoluteThresholdRule, FromPercent
from shared.analytes import UnitNotConvertible, analyte_for, shown_unit
from shared.plausibility import implausible_reference_range
from shared.qualitative import qualitative_answer

#: flags (HL7 table 0078, FHIR ObservationInterpretation) saying a result is beyond the
#: laboratory's limit on that side; A and AA (abnormal) say so for a one-sided test
_ABOVE_FLAGS = frozenset({"H", "HH", "HU", ">", "A", "AA"})
_BELOW_FLAGS = frozenset({"L", "LL", "LU", "<", "A", "AA"})


def judge_absolute_threshold(
    rule: AbsoluteThresholdRule, history: SubjectHistory, only: set[uuid.UUID] | None = None
) -> Judged:
    """Whether each result of the rule's analytes (or each count derived from a percentage
    and its total) meets a fixed threshold in the rule's unit (``value < 9 g/dL``), graded
    by the rule's CTCAE bands when it does; a rule on the laboratory's cut-off takes the
    cut-off or flag it sent. ``only`` judges just those new results. A censored result that
    may lie on either side is a ``censored-result`` problem, never a point."""

    def judge_entry(entry: LabEntry) -> EntryJudgement:
        judged = judge_by_threshold(entry)
        if rule.laboratory_limit is not None and _range_unusable(entry):
            # the laboratory's range cannot be right: judged by the rule's threshold alone
            judged = (judged[0], (*judged[1], _range_set_aside(rule, entry)))
        cut_off = _laboratory_cut_off(rule, entry)
        if judged[0] is not None and judged[0].holds:
            return judged
        if cut_off is None:
            flagged = _flag_point(rule, entry)
            return (flagged, judged[1]) if flagged is not None else judged
        # the laboratory's cut-off when sent, and the rule's threshold: the more alerting
        # (a cut-off of 25 mIU/mL does not hide an hCG of 10 that the rule's 5 flags)
        by_cut_off = _cut_off_point(rule, entry, cut_off)
        if by_cut_off[0] is not None and by_cut_off[0].holds:
            return by_cut_off
        return judged if judged[0] is not None or judged[1] else by_cut_off

    def judge_by_threshold(entry: LabEntry) -> EntryJudgement:
        try:
            value = value_in(entry, rule.unit)
        except UnitNotConvertible:
            if _unscaled(entry):
                return _unscaled_point(rule, entry)
            return None, ()  # ingest raised the data-quality issue when it received it
        comparator = entry.result.comparator
        holds = rule.holds(value, comparator)
        if holds is None:
            holds = _read_below_limit(rule, entry)
        if holds is None:
            return None, (censored_problem(rule, entry, rule.describe()),)
        grade = (  # only a finding is graded
            grade_of(
                rule.grading,
                lab_quantities(entry, value, history),
                comparator,
                abnormal_baseline=has_abnormal_baseline(entry, history),
            )
            if holds
            else None
        )
        return lab_point(
            rule,
            entry,
            holds=holds,
            grade=grade,
            value=value,
            unit=rule.unit,
            comparison=lambda: (
                f"{comparator or ''}{shown_number(value)} {rule.unit} {rule.describe()}"
            ),
        ), ()

    points, problems = judge_each_entry(
        numeric_results(candidate_results(history, rule.loinc_codes, only)),
        lambda entry: (id(rule), baseline_key(history, entry)),
        judge_entry,
    )
    for derivation in rule.derive_from_percent:
        more, found = _from_percent(rule, derivation, history, only)
        points += more
        problems += found
    return points, problems


def _unscaled(entry: LabEntry) -> bool:
    """Whether the result is in a unit of its analyte with no universal factor to the
    canonical one (HBV DNA in copies/mL)."""
    analyte = analyte_for(entry.result.loinc_code or "")
    unit = entry.result.unit
    return analyte is not None and unit is not None and analyte.unscaled(unit)


def _unscaled_point(rule: AbsoluteThresholdRule, entry: LabEntry) -> EntryJudgement:
    """A result in a unit with no universal factor (copies/mL against IU/mL) judged by a
    detection rule: against a threshold of 0 only its sign matters, and zero is zero in any
    unit, so the number as sent is compared. Any other threshold needs the factor: the rule
    says it could not judge the result (never silent)."""
    result = entry.result
    assert result.value is not None
    unit = shown_unit(result.unit)
    if rule.threshold != 0:
        return None, (
            Problem(
                "unit-not-convertible",
                f"rule {rule.id}: {analyte_label(entry)} collected "
                f"{result.collected_at.isoformat()} came in {unit}, which has no universal "
                f"factor to {rule.unit}, so the rule ({rule.describe()}) could not judge it; "
                f"ask the laboratory for {rule.unit}",
                entry.event_id,
                rule.id,
            ),
        )
    comparator = result.comparator
    holds = rule.holds(result.value, comparator)
    if holds is None:
        return None, (censored_problem(rule, entry, rule.describe()),)
    return lab_point(
        rule,
        entry,
        holds=holds,
        grade=None,
        value=result.value,
        unit=unit,
        comparison=f"{comparator or ''}{shown_number(result.value)} {unit} {rule.operator} 0 "
        "(detection: zero in any unit)",
    ), ()


def _laboratory_cut_off(rule: AbsoluteThresholdRule, entry: LabEntry) -> Decimal | None:
    """The laboratory's own limit when the rule takes it as the threshold and it was sent."""
    if rule.laboratory_limit is None:
        return None
    low, high = lab_limits(entry.result)
    limit = high if rule.laboratory_limit == "ULN" else low
    return limit if limit is not None and limit > 0 else None


def _read_below_limit(rule: AbsoluteThresholdRule, entry: LabEntry) -> bool | None:
    """A result below an assay's limit ("<20") on a rule asking for any amount above zero
    (``> 0``) by what its text says: detected is above zero (it holds), not detected is no
    amount found (it does not); None when the text says neither, or for any other rule."""
    result = entry.result
    if result.comparator not in ("<", "<=") or rule.operator not in (">", ">="):
        return None
    said = result.qualitative or qualitative_answer(result.value_text)
    if said == "positive" and rule.threshold <= 0:
        return True
    if said == "negative" and rule.operator == ">" and rule.threshold == 0:
        return False
    return None


def _flag_point(rule: AbsoluteThresholdRule, entry: LabEntry) -> Point | None:
    """The laboratory's flag standing for the cut-off it did not send: a rule on the
    laboratory's ULN holds for a result flagged above it (LLN: below it)."""
    if rule.laboratory_limit is None or rule.operator not in (
        (">", ">=") if rule.laboratory_limit == "ULN" else ("<", "<=")
    ):
        return None
    result = entry.result
    said = _ABOVE_FLAGS if rule.laboratory_limit == "ULN" else _BELOW_FLAGS
    flags = sorted({flag.upper() for flag in result.abnormal_flags} & said)
    if not flags or result.value is None:
        return None
    side = "above" if rule.laboratory_limit == "ULN" else "below"
    unit = shown_unit(result.unit)
    text = (
        f"{result.comparator or ''}{shown_number(result.value)} {unit} flagged {'/'.join(flags)} "
        f"(HL7 table 0078) by the laboratory, which sent no range: {side} its "
        f"{rule.laboratory_limit}, its cut-off"
    )
    return lab_point(
        rule,
        entry,
        holds=True,
        grade=_graded(rule, entry),
        value=result.value,
        unit=unit,
        comparison=" ".join(text.split()),
        extra={"threshold": f"the laboratory's {rule.laboratory_limit} (flagged {side})"},
    )


def _range_unusable(entry: LabEntry) -> bool:
    return implausible_reference_range(entry.result) is not None


def _range_set_aside(rule: AbsoluteThresholdRule, entry: LabEntry) -> Problem:
    return Problem(
        "reference-range-implausible",
        f"{analyte_label(entry)} collected {entry.result.collected_at.isoformat()} came with a "
        f"reference range that cannot be right ({implausible_reference_range(entry.result)}) "
        f"and is set aside: rule {rule.id} judged it by its own threshold alone",
        entry.event_id,
        rule.id,
    )


def _cut_off_point(
    rule: AbsoluteThresholdRule, entry: LabEntry, cut_off: Decimal
) -> EntryJudgement:
    """The result against its laboratory's cut-off, both in the unit it was sent in."""
    result = entry.result
    assert result.value is not None
    unit = shown_unit(result.unit)
    comparator = result.comparator
    holds = rule.holds(result.value, comparator, cut_off)
    condition = (
        f"{rule.operator} the laboratory's {rule.laboratory_limit} {shown_number(cut_off)} {unit}"
    )
    if holds is None:
        return None, (censored_problem(rule, entry, condition),)
    text = (
        f"{comparator or ''}{shown_number(result.value)} {unit} {rule.operator} "
        f"{shown_number(cut_off)} {unit} (the laboratory's {rule.laboratory_limit}, its cut-off)"
    )
    return lab_point(
        rule,
        entry,
        holds=holds,
        grade=_graded(rule, entry) if holds else None,
        value=result.value,
        unit=unit,
        comparison=text,
        extra={"threshold": f"{shown_number(cut_off)} {unit} (the laboratory's cut-off)"},
    ), ()


def _graded(rule: AbsoluteThresholdRule, entry: LabEntry) -> int | None:
    """A grading's bands are in the rule's unit: a result it cannot convert is not graded."""
    try:
        value = value_in(entry, rule.unit)
    except UnitNotConvertible:
        return None
    return grade_of(rule.grading, {"value": value}, entry.result.comparator)


def _from_percent(
    rule: AbsoluteThresholdRule,
    derivation: FromPercent,
    history: SubjectHistory,
    only: set[uuid.UUID] | None = None,
) -> Judged:
    """Counts derived from a percentage and the total count of the same specimen (same
    collection time); a percentage without its total is a data-quality problem. ``only``:
    just the percentages among those new results (the engine asks so only when no new
    total came, see :func:`~services.safety_rules.domain.conditions.entrywise`)."""
    if only is not None and not only:
        return [], []
    percents = numeric_results(candidate_results(history, derivation.percent_codes, only))
    if not percents:
        return [], []
    totals = {e.at: e for e in numeric_results(history.results(*derivation.total_codes))}
    points: list[Point] = []
    problems: list[Problem] = []
    for entry in percents:
        total = totals.get(entry.at)
        if total is None:
            problems.append(
                Problem(
                    "missing-input",
                    f"rule {rule.id}: {analyte_label(entry)} {as_reported(entry)} has no total "
                    f"count ({'/'.join(derivation.total_codes)}) of the same specimen, so the "
                    "absolute count cannot be derived",
                    entry.event_id,
                    rule.id,
                )
            )
            continue
        point, found = memoised_judgement(
            entry,
            (id(rule), "from-percent", total.event_id),
            functools.partial(_percent_point, rule, entry, total),
        )
        problems += found
        if point is not None:
            points.append(point)
    return points, problems


def _percent_point(rule: AbsoluteThresholdRule, entry: LabEntry, total: LabEntry) -> EntryJudgement:
    assert entry.result.value is not None
    try:
        count = value_in(total, rule.unit)
    except UnitNotConvertible:
        return None, ()
    value = entry.result.value / 100 * count
    comparator = entry.result.comparator
    holds = rule.holds(value, comparator)
    if holds is None:
        return None, (censored_problem(rule, entry, rule.describe()),)
    derived = (
        f"{shown_number(entry.result.value)} % x {analyte_label(total)} "
        f"{shown_number(count)} {rule.unit} = "
        f"{shown_number(value)} {rule.unit}"
    )
    point = lab_point(
        rule,
        entry,
        holds=holds,
        grade=grade_of(rule.grading, {"value": value}, comparator),
        value=value,
        unit=rule.unit,
        comparison=f"{comparator or ''}{shown_number(value)} {rule.unit} {rule.describe()}",
        extra={"derived": derived},
        input_ids=(entry.event_id, total.event_id),
    )
    analyte = analyte_for(rule.loinc_codes[0])
    name = analyte.name if analyte else rule.loinc_codes[0]
    return replace(point, analyte=f"{name} (from {analyte_label(entry)} %)"), ()
