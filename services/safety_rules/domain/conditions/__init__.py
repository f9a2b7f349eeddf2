"""Condition kinds: from a subject's history, the points in clinical time where a rule was
judged, each saying whether the condition held, how bad it was, and on which facts (pure).
"""

from __future__ import annotations

import bisect
import functools
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from services.safety_rules.domain.conditions.grading import (
    _abnormal_baseline,
    _baseline_key,
    _lab_quantities,
    grade_of,
    surely_holds,
)
from services.safety_rules.domain.conditions.lab_values import (
    _candidates,
    _Limit,
    _numeric,
    _ratio_to_limit,
    value_in,
)
from services.safety_rules.domain.conditions.points import (
    Judged,
    LazyMapping,
    Point,
    Problem,
    _each,
    _Judgement,
    _lab_point,
    _label,
    _memoised,
    _num,
    _reported,
)
from services.safety_rules.domain.history import LabEntry, SubjectHistory
from services.safety_rules.domain.rule_pack import (
    AbsoluteThresholdRule,
    AdverseEventRule,
    BaselineChangeRule,
    CodedResultRule,
    CreatinineClearanceRule,
    FromPercent,
    HysLawRule,
    MedicationRule,
    QualitativeRule,
    ReferenceLimitRule,
    Rule,
    compare,
    may_hold,
)
from shared.analytes import UnitNotConvertible, analyte_for
from shared.events import Sex, SubjectEnrolled

__all__ = [
    "Judged",
    "LazyMapping",
    "Point",
    "Problem",
    "entrywise",
    "grade_of",
    "judge",
    "surely_holds",
    "value_in",
]


def judge(rule: Rule, history: SubjectHistory, only: set[uuid.UUID] | None = None) -> Judged:
    """The points of ``rule`` over the whole of ``history``."""
    if only is not None:
        return _ENTRYWISE[type(rule)](rule, history, only)
    return _KINDS[type(rule)](rule, history)


def _flip(comparator: str | None) -> str | None:
    """The comparator of ``k / x`` for a censored ``x``."""
    flipped = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}
    return flipped.get(comparator) if comparator else None


# -- the kinds -----------------------------------------------------------------------------


def _keyed(key: tuple[object, ...], entry: LabEntry) -> tuple[object, ...]:
    return key


def _absolute(
    rule: AbsoluteThresholdRule, history: SubjectHistory, only: set[uuid.UUID] | None = None
) -> Judged:
    def judge_entry(entry: LabEntry) -> _Judgement:
        try:
            value = value_in(entry, rule.unit)
        except UnitNotConvertible:
            return None, ()  # ingest raised the data-quality issue when it received it
        comparator = entry.result.comparator
        holds = rule.holds(value, comparator)
        grade = (  # only a finding is graded
            grade_of(
                rule.grading,
                _lab_quantities(entry, value, history),
                comparator,
                abnormal_baseline=_abnormal_baseline(entry, history),
            )
            if holds
            else None
        )
        return _lab_point(
            rule,
            entry,
            holds=holds,
            grade=grade,
            value=value,
            unit=rule.unit,
            comparison=lambda: f"{comparator or ''}{_num(value)} {rule.unit} {rule.describe()}",
        ), ()

    points, problems = _each(
        _numeric(_candidates(history, rule.loinc_codes, only)),
        lambda entry: (id(rule), _baseline_key(history, entry)),
        judge_entry,
    )
    for derivation in rule.derive_from_percent:
        more, found = _from_percent(rule, derivation, history)
        points += more
        problems += found
    return points, problems


def _from_percent(
    rule: AbsoluteThresholdRule, derivation: FromPercent, history: SubjectHistory
) -> Judged:
    """Counts derived from a percentage and the total count of the same specimen (same
    collection time); a percentage without its total is a data-quality problem."""
    totals = {e.at: e for e in _numeric(history.results(derivation.total_code))}
    points: list[Point] = []
    problems: list[Problem] = []
    for entry in _numeric(history.results(derivation.percent_code)):
        total = totals.get(entry.at)
        if total is None:
            problems.append(
                Problem(
                    "missing-input",
                    f"rule {rule.id}: {entry.result.analyte_text or derivation.percent_code} "
                    f"{_reported(entry)} has no total count ({derivation.total_code}) of the "
                    "same specimen, so the absolute count cannot be derived",
                    entry.event_id,
                    rule.id,
                )
            )
            continue
        point, _ = _memoised(
            entry,
            (id(rule), "from-percent", total.event_id),
            functools.partial(_percent_point, rule, entry, total),
        )
        if point is not None:
            points.append(point)
    return points, problems


def _percent_point(rule: AbsoluteThresholdRule, entry: LabEntry, total: LabEntry) -> _Judgement:
    assert entry.result.value is not None
    try:
        count = value_in(total, rule.unit)
    except UnitNotConvertible:
        return None, ()
    value = entry.result.value / 100 * count
    comparator = entry.result.comparator
    derived = (
        f"{_num(entry.result.value)} % x {_label(total)} {_num(count)} {rule.unit} = "
        f"{_num(value)} {rule.unit}"
    )
    point = _lab_point(
        rule,
        entry,
        holds=rule.holds(value, comparator),
        grade=grade_of(rule.grading, {"value": value}, comparator),
        value=value,
        unit=rule.unit,
        comparison=f"{comparator or ''}{_num(value)} {rule.unit} {rule.describe()}",
        extra={"derived": derived},
        input_ids=(entry.event_id, total.event_id),
    )
    analyte = analyte_for(rule.loinc_codes[0])
    name = analyte.name if analyte else rule.loinc_codes[0]
    return replace(point, analyte=f"{name} (from {_label(entry)} %)"), ()


def _reference(
    rule: ReferenceLimitRule, history: SubjectHistory, only: set[uuid.UUID] | None = None
) -> Judged:
    def judge_entry(entry: LabEntry) -> _Judgement:
        problems: list[Problem] = []
        limit = _ratio_to_limit(entry, rule.limit, rule.fallback_limits, rule.id, problems)
        if limit is None:
            return None, tuple(problems)
        comparator = entry.result.comparator
        value = entry.result.value
        assert value is not None
        holds = may_hold(limit.ratio, comparator, rule.operator, rule.multiple)
        grade = None
        if holds:  # only a finding is graded
            quantities = _lab_quantities(entry, value, history)
            quantities["uln" if rule.limit == "ULN" else "lln"] = limit.ratio
            grade = grade_of(
                rule.grading,
                quantities,
                comparator,
                abnormal_baseline=_abnormal_baseline(entry, history),
            )
        label = _label(entry)
        return _lab_point(
            rule,
            entry,
            holds=holds,
            grade=grade,
            value=value,
            unit=entry.result.unit or "",
            comparison=lambda: (
                f"{label}/{rule.limit} = {_num(limit.ratio)} "
                f"({rule.limit} {limit.limit_text}), rule {rule.describe()}"
            ),
            extra=lambda: {
                f"{label}/{rule.limit}": _num(limit.ratio),
                rule.limit: limit.limit_text,
            },
        ), tuple(problems)

    return _each(
        _numeric(_candidates(history, rule.loinc_codes, only)),
        lambda entry: (id(rule), _baseline_key(history, entry)),
        judge_entry,
    )


def _change(
    rule: BaselineChangeRule, history: SubjectHistory, only: set[uuid.UUID] | None = None
) -> Judged:
    if history.enrolment is None:
        return [], []
    points: list[Point] = []
    problems: list[Problem] = []
    day0 = history.day0
    for code in rule.loinc_codes:
        entries = history.results(code)
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
                problems.append(
                    Problem(
                        "missing-input",
                        f"rule {rule.id}: no {_label(first_after)} result on or before Day 0 "
                        f"({day0.isoformat()}) to serve as baseline",
                        first_after.event_id,
                        rule.id,
                    )
                )
            continue
        try:
            base = value_in(baseline, rule.unit)
        except UnitNotConvertible:
            continue
        if base == 0 and rule.change != "absolute":
            continue
        after = [e for e in _numeric(_candidates(history, (code,), only)) if e.at.date() > day0]
        judged = _each(
            after,
            functools.partial(_keyed, (id(rule), baseline.event_id)),
            functools.partial(_change_point, rule, baseline, base),
        )
        points += judged[0]
    return points, problems


def _change_point(
    rule: BaselineChangeRule, baseline: LabEntry, base: Decimal, entry: LabEntry
) -> _Judgement:
    try:
        value = value_in(entry, rule.unit)
    except UnitNotConvertible:
        return None, ()
    if rule.change == "ratio":
        amount, text = value / base, f"{_num(value / base)} x baseline"
    elif rule.change == "percent":
        amount = (value - base) / base * 100
        text = f"{_num(amount, '0.1')} % from baseline"
    else:
        amount, text = value - base, f"{_num(value - base)} {rule.unit} from baseline"
    comparator = entry.result.comparator
    return _lab_point(
        rule,
        entry,
        holds=may_hold(amount, comparator, rule.operator, rule.amount),
        grade=grade_of(
            rule.grading,
            {"value": value, "baseline": value / base if base else None},
            comparator,
        ),
        value=value,
        unit=rule.unit,
        comparison=f"{text}, rule {rule.describe()}",
        extra={
            "baseline": f"{_num(base)} {rule.unit} collected {baseline.at.isoformat()}",
            "change": text,
        },
        input_ids=(entry.event_id, baseline.event_id),
    ), ()


def _age(birth: date, at: datetime) -> int:
    day = at.date()
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def _nearest_weight(
    history: SubjectHistory, rule: CreatinineClearanceRule, at: datetime
) -> tuple[Decimal, datetime, uuid.UUID, str] | None:
    candidates: list[tuple[Decimal, datetime, uuid.UUID, str]] = []
    for entry in _numeric(history.results(*rule.weight_codes)):
        try:
            candidates.append((value_in(entry, "kg"), entry.at, entry.event_id, "weight result"))
        except UnitNotConvertible:
            continue
    enrolment = history.enrolment_weight()
    if enrolment is not None:
        candidates.append((*enrolment, "enrolment record"))
    if not candidates:
        return None
    return min(candidates, key=lambda c: (abs((c[1] - at).total_seconds()), c[1]))


def _clearance(
    rule: CreatinineClearanceRule, history: SubjectHistory, only: set[uuid.UUID] | None = None
) -> Judged:
    points: list[Point] = []
    problems: list[Problem] = []
    for entry in _numeric(_candidates(history, rule.measured_codes, only)):
        try:
            value = value_in(entry, rule.unit)
        except UnitNotConvertible:
            continue
        comparator = entry.result.comparator
        points.append(
            _lab_point(
                rule,
                entry,
                holds=may_hold(value, comparator, rule.operator, rule.threshold),
                grade=grade_of(rule.grading, {"value": value}, comparator),
                value=value,
                unit=rule.unit,
                comparison=f"measured creatinine clearance {comparator or ''}{_num(value)} "
                f"{rule.unit}, rule {rule.describe()}",
                extra={"method": "measured"},
            )
        )
    enrolment = history.enrolment
    if enrolment is None:
        return points, problems
    assert history.enrolment_fact is not None
    enrolled_by = history.enrolment_fact.event_id
    for entry in _numeric(_candidates(history, rule.creatinine_codes, only)):
        weight = _nearest_weight(history, rule, entry.at)
        if weight is None:
            problems.append(
                Problem(
                    "missing-input",
                    f"rule {rule.id}: no body weight (enrolment or LOINC 29463-7) to compute "
                    "creatinine clearance by Cockcroft-Gault",
                    entry.event_id,
                    rule.id,
                )
            )
            continue
        point, _ = _memoised(
            entry,
            (id(rule), weight[2], enrolled_by),
            functools.partial(_cockcroft_gault, rule, enrolment, entry, weight),
        )
        if point is not None:
            points.append(point)
    return points, problems


def _cockcroft_gault(
    rule: CreatinineClearanceRule,
    enrolment: SubjectEnrolled,
    entry: LabEntry,
    weight: tuple[Decimal, datetime, uuid.UUID, str],
) -> _Judgement:
    try:
        creatinine = value_in(entry, "mg/dL")
    except UnitNotConvertible:
        return None, ()
    if creatinine <= 0:
        return None, ()
    kg, weighed_at, weight_id, weight_source = weight
    age = _age(enrolment.birth_date, entry.at)
    female = enrolment.sex != Sex.MALE
    factor = rule.female_factor if female else Decimal(1)
    clearance = Decimal(140 - age) * kg / (Decimal(72) * creatinine) * factor
    flipped = _flip(entry.result.comparator)
    sex_note = {Sex.FEMALE: "female", Sex.MALE: "male"}.get(
        enrolment.sex,
        f"{enrolment.sex.value} (x {rule.female_factor} applied: the "
        "lower, more alerting estimate)",
    )
    extra = {
        "method": "Cockcroft-Gault",
        "CrCl": f"{_num(clearance, '0.1')} mL/min",
        "age_years": age,
        "sex": sex_note,
        "weight_kg": f"{_num(kg, '0.1')} ({weight_source}, {weighed_at.isoformat()})",
        "creatinine_mg_dl": _num(creatinine),
        "formula": f"(140 - {age}) x {_num(kg, '0.1')} / (72 x {_num(creatinine)})"
        + (f" x {rule.female_factor}" if female else ""),
    }
    return _lab_point(
        rule,
        entry,
        holds=may_hold(clearance, flipped, rule.operator, rule.threshold),
        grade=grade_of(rule.grading, {"value": clearance}, flipped),
        value=clearance,
        unit=rule.unit,
        comparison=f"CrCl = {_num(clearance, '0.1')} mL/min, rule {rule.describe()}",
        extra=extra,
        input_ids=(entry.event_id, weight_id),
    ), ()


def _hys_law(
    rule: HysLawRule, history: SubjectHistory, only: set[uuid.UUID] | None = None
) -> Judged:
    problems: list[Problem] = []
    groups = _hy_groups(rule)
    window = timedelta(days=rule.window_days)
    span, news = _hy_span(history, groups, only, window)
    if only is not None and not news:
        return [], problems  # no new result of the rule's analytes
    recorded = any(e.rule_id == rule.id for e in history.episodes.values())
    if only is not None and not recorded:
        # the usual case: the new results' own problems, then whether each limb is crossed
        # in their windows, bilirubin first (fewer results): most often it is not, and
        # nothing else is read
        for entry, group in news:
            if (limb := _hy_limb(rule, entry, group)) is not None:
                problems += limb[1]
        if not (
            _limb_crossed(rule, history, _BILIRUBIN, span)
            and _limb_crossed(rule, history, _TRANSAMINASE, span)
        ):
            return [], problems
    entries: list[list[LabEntry]] = []
    crossed = [False, False, False]
    ratios: dict[uuid.UUID, _Limit] = {}
    for group, codes in enumerate(groups):
        kept = []
        for entry in _within(history.results(*codes), span):
            if (limb := _hy_limb(rule, entry, group)) is None:
                continue
            limit, found, above = limb
            if found:
                problems += found
            if limit is not None:
                ratios[entry.event_id] = limit
                kept.append(entry)
                crossed[group] = crossed[group] or above
        entries.append(kept)
    transaminases, bilirubins, phosphatases = entries
    if not recorded and not (crossed[_TRANSAMINASE] and crossed[_BILIRUBIN]):
        # neither limb was crossed and nothing is on record: no point can hold, and there
        # is nothing to resolve (this keeps the common case linear)
        return [], problems
    points: list[Point] = []
    judged = [e for group in entries for e in group if only is None or e.event_id in only]
    for entry in sorted(judged, key=lambda e: e.at):
        start = entry.at - window
        in_window = [
            [e for e in group if start <= e.at <= entry.at] for group in (transaminases, bilirubins)
        ]
        if not all(in_window):
            points.append(_hy_point(rule, entry, None, None, None, ratios, holds=False))
            continue
        top_t = max(in_window[0], key=lambda e: ratios[e.event_id].ratio)
        top_b = max(in_window[1], key=lambda e: ratios[e.event_id].ratio)
        alp = [e for e in phosphatases if start <= e.at <= entry.at]
        nearest = min(alp, key=lambda e: abs((e.at - top_t.at).total_seconds()), default=None)
        core = may_hold(
            ratios[top_t.event_id].ratio, top_t.result.comparator, ">", rule.transaminase_multiple
        ) and may_hold(
            ratios[top_b.event_id].ratio, top_b.result.comparator, ">", rule.bilirubin_multiple
        )
        cholestatic = nearest is not None and not may_hold(
            ratios[nearest.event_id].ratio,
            nearest.result.comparator,
            "<",
            rule.alkaline_phosphatase_multiple,
        )
        points.append(
            _hy_point(rule, entry, top_t, top_b, nearest, ratios, holds=core and not cholestatic)
        )
    return points, problems


_TRANSAMINASE, _BILIRUBIN, _PHOSPHATASE = 0, 1, 2


def _hy_groups(rule: HysLawRule) -> tuple[tuple[str, ...], ...]:
    return (rule.transaminase_codes, rule.bilirubin_codes, rule.alkaline_phosphatase_codes)


def _hy_limb(
    rule: HysLawRule, entry: LabEntry, group: int
) -> tuple[_Limit | None, tuple[Problem, ...], bool] | None:
    """An entry's multiple of its ULN, the problems found working it out, and whether it
    crosses its limb of the rule; worked out once per entry (None: no value)."""
    if entry.result.value is None:
        return None
    key = (id(rule), "hy", group)
    judged: tuple[_Limit | None, tuple[Problem, ...], bool] | None = entry.memo.get(key)
    if judged is None:
        found: list[Problem] = []
        limit = _ratio_to_limit(entry, "ULN", rule.fallback_limits, rule.id, found)
        multiple = (rule.transaminase_multiple, rule.bilirubin_multiple, None)[group]
        above = limit is not None and multiple is not None and _above(limit, entry, multiple)
        judged = entry.memo[key] = (limit, tuple(found), above)
    return judged


def _limb_crossed(
    rule: HysLawRule, history: SubjectHistory, group: int, span: tuple[datetime, datetime]
) -> bool:
    """Whether any result of the limb collected within ``span`` crosses it."""
    return any(
        (limb := _hy_limb(rule, entry, group)) is not None and limb[2]
        for entry in _within(history.results(*_hy_groups(rule)[group]), span)
    )


def _hy_span(
    history: SubjectHistory,
    groups: tuple[tuple[str, ...], ...],
    only: set[uuid.UUID] | None,
    window: timedelta,
) -> tuple[tuple[datetime, datetime], list[tuple[LabEntry, int]]]:
    """The collection times a judgement reads, and the new results with their groups:
    everything, or when only new results are judged, from a window before the earliest of
    them to the latest."""
    if only is None:
        return (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)), []
    news = [
        (entry, group)
        for event_id in only
        if (entry := history.labs.get(event_id)) is not None
        for group, codes in enumerate(groups)
        if entry.result.loinc_code in codes
    ]
    if not news:
        return (datetime.min.replace(tzinfo=UTC), datetime.min.replace(tzinfo=UTC)), []
    times = [entry.at for entry, _ in news]
    return (min(times) - window, max(times)), news


def _within(entries: list[LabEntry], span: tuple[datetime, datetime]) -> list[LabEntry]:
    """The entries (in collection-time order) collected within ``span``, both ends included."""
    low = bisect.bisect_left(entries, span[0], key=_collected)
    return entries[low : bisect.bisect_right(entries, span[1], lo=low, key=_collected)]


def _collected(entry: LabEntry) -> datetime:
    return entry.at


def _above(limit: _Limit, entry: LabEntry, multiple: Decimal) -> bool:
    return may_hold(limit.ratio, entry.result.comparator, ">", multiple)


def _hy_point(
    rule: HysLawRule,
    entry: LabEntry,
    transaminase: LabEntry | None,
    bilirubin: LabEntry | None,
    phosphatase: LabEntry | None,
    ratios: Mapping[uuid.UUID, _Limit],
    *,
    holds: bool,
) -> Point:
    computed: dict[str, Any] = {"window_days": rule.window_days}
    ids = [entry.event_id]
    parts = []
    for name, item in (
        ("transaminase", transaminase),
        ("bilirubin", bilirubin),
        ("alkaline_phosphatase", phosphatase),
    ):
        if item is None:
            continue
        ratio = ratios[item.event_id]
        label = _label(item)
        computed[f"{label}/ULN"] = _num(ratio.ratio)
        computed[f"{name}_result"] = (
            f"{label} {_reported(item)} (ULN {ratio.limit_text}) collected {item.at.isoformat()}"
        )
        parts.append(f"{label}/ULN = {_num(ratio.ratio)}")
        if item.event_id not in ids:
            ids.append(item.event_id)
    if transaminase is not None and phosphatase is None:
        computed["alkaline_phosphatase"] = (
            "no result in the window: cholestasis is not excluded, so the rule alerts"
        )
    peak = ratios[transaminase.event_id].ratio if transaminase else None
    return Point(
        at=entry.at,
        holds=holds,
        input_ids=tuple(ids),
        analyte="ALT/AST with total bilirubin",
        summary="; ".join(parts) or f"{_label(entry)} {_reported(entry)}",
        observed_value=peak,
        observed_unit="x ULN" if peak is not None else None,
        computed={**computed, "comparison": "; ".join(parts) + f"; rule {rule.describe()}"},
        learned_at=entry.recorded_at,
    )


def _matches(rule: AdverseEventRule, text: str, *codes: str | None) -> bool:
    if any(code and code in (*rule.system_organ_class_codes, *rule.meddra_codes) for code in codes):
        return True
    return any(re.search(pattern, text, re.IGNORECASE) for pattern in rule.term_patterns)


def _adverse(rule: AdverseEventRule, history: SubjectHistory) -> Judged:
    points: list[Point] = []
    for ae_id, entry in sorted(history.adverse_events.items()):
        report = entry.report
        text = " ".join(filter(None, (report.term, report.system_organ_class)))
        if rule.criterion == "serious":
            holds = report.serious
        elif rule.criterion == "serious-infection":
            holds = report.serious and _matches(
                rule, text, report.system_organ_class_code, report.meddra_code
            )
        elif rule.criterion == "nyha-class":
            holds = report.nyha_class in rule.nyha_classes or (
                bool(rule.term_patterns) and _matches(rule, text, report.meddra_code)
            )
        else:
            holds = _matches(rule, text, report.system_organ_class_code, report.meddra_code)
        if rule.require_serious:
            holds = holds and report.serious
        criteria = ", ".join(report.seriousness_criteria) or (
            "serious" if report.serious else "not serious"
        )
        computed: dict[str, Any] = {
            "term": report.term,
            "seriousness": criteria,
            "onset": report.onset.isoformat(),
            "ae_id": ae_id,
        }
        for key, value in (
            ("system_organ_class", report.system_organ_class),
            ("meddra_code", report.meddra_code),
            ("nyha_class", report.nyha_class),
            ("severity", report.severity),
            ("outcome", report.outcome),
        ):
            if value:
                computed[key] = value
        base = functools.partial(
            Point,
            input_ids=(entry.event_id,),
            analyte=report.term,
            episode_key=f"ae:{ae_id}",
            learned_at=entry.serious_since or entry.recorded_at,
            serious=report.serious,
        )
        points.append(
            base(
                at=report.onset,
                holds=holds,
                grade=report.ctcae_grade,
                summary=f"adverse event {ae_id} '{report.term}' ({criteria})",
                computed={
                    **computed,
                    "comparison": f"{report.term}: {criteria}; rule {rule.describe()}",
                },
            )
        )
        if holds and report.end is not None:
            points.append(
                base(
                    at=report.end,
                    holds=False,
                    summary=f"adverse event {ae_id} ended ({report.outcome})",
                    computed={"end": report.end.isoformat()},
                )
            )
    return points, []


_FREQUENCIES: dict[str, Decimal] = {
    **dict.fromkeys(
        (
            "qd",
            "od",
            "daily",
            "once daily",
            "q24h",
            "qam",
            "qpm",
            "qhs",
            "hs",
            "once",
            "stat",
            "1/d",
            "/d",
            "every day",
        ),
        Decimal(1),
    ),
    **dict.fromkeys(("bid", "q12h", "twice daily", "2/d"), Decimal(2)),
    **dict.fromkeys(("tid", "q8h", "three times daily", "3/d"), Decimal(3)),
    **dict.fromkeys(("qid", "q6h", "four times daily", "4/d"), Decimal(4)),
    **dict.fromkeys(("qod", "q48h", "every other day", "eod"), Decimal("0.5")),
    **dict.fromkeys(("qw", "weekly", "q1w", "once weekly"), Decimal(1) / Decimal(7)),
    **dict.fromkeys(("q2w", "biweekly"), Decimal(1) / Decimal(14)),
    **dict.fromkeys(("q4w", "monthly"), Decimal(1) / Decimal(28)),
}
_MG_PER_UNIT = {
    "mg": Decimal(1),
    "g": Decimal(1000),
    "ug": Decimal("0.001"),
    "mcg": Decimal("0.001"),
    "µg": Decimal("0.001"),
}


def _per_day(frequency: str | None) -> Decimal | None:
    if frequency is None:
        return Decimal(1)
    return _FREQUENCIES.get(" ".join(frequency.lower().replace(".", "").split()))


def _drug(rule: MedicationRule, drug: str, code: str | None) -> Decimal | None:
    """The equivalence factor of a drug the rule counts, or None."""
    name = drug.lower()
    for match in rule.drugs:
        if code and any(code.upper().startswith(atc.upper()) for atc in match.atc):
            return match.factor
        if any(
            re.search(rf"\b{re.escape(alias.lower())}\b", name)
            for alias in (match.name, *match.aliases)
        ):
            return match.factor
    if code and any(code.upper().startswith(prefix.upper()) for prefix in rule.atc_prefixes):
        return Decimal(1)
    return None


def _medication(rule: MedicationRule, history: SubjectHistory) -> Judged:
    problems: list[Problem] = []
    counted = []
    for entry in history.medications.values():
        record = entry.record
        factor = _drug(rule, record.drug, record.drug_code)
        if factor is None:
            continue
        route = " ".join(record.route.lower().replace(".", "").split())
        if rule.routes and route not in {r.lower().replace(".", "") for r in rule.routes}:
            continue
        if rule.criterion == "route":
            counted.append((entry, Decimal(0)))
            continue
        mg = _MG_PER_UNIT.get(record.dose_unit.lower())
        per_day = _per_day(record.frequency)
        if mg is None or per_day is None:
            problems.append(
                Problem(
                    "dose-not-convertible",
                    f"rule {rule.id}: {record.drug} {record.dose:f} {record.dose_unit} "
                    f"{record.frequency or ''} cannot be turned into mg/day",
                    entry.event_id,
                    rule.id,
                )
            )
            continue
        counted.append((entry, record.dose * mg * per_day * factor))
    moments = sorted(
        {
            m
            for entry, _ in counted
            for m in (entry.record.start, entry.record.stop)
            if m is not None
        }
    )
    points: list[Point] = []
    for moment in moments:
        active = [
            (e, d)
            for e, d in counted
            if e.record.start <= moment and (e.record.stop is None or e.record.stop > moment)
        ]
        active.sort(key=lambda item: item[0].record.start)
        trigger = next(
            (e for e, _ in counted if e.record.start == moment or e.record.stop == moment)
        )
        drugs = (
            ", ".join(
                f"{e.record.drug} {e.record.dose:f} {e.record.dose_unit} "
                f"{e.record.frequency or 'QD'} {e.record.route}"
                for e, _ in active
            )
            or "none"
        )
        if rule.criterion == "route":
            holds = bool(active)
            total = None
            comparison = f"active: {drugs}; rule {rule.describe()}"
        else:
            assert rule.threshold is not None
            total = sum((d for _, d in active), Decimal(0))
            holds = compare(total, rule.operator, rule.threshold)
            comparison = (
                f"{_num(total)} mg/day {rule.reference_drug or ''}-equivalent {rule.describe()}"
            ).replace(" -equivalent", "")
        ids = tuple(dict.fromkeys([trigger.event_id, *(e.event_id for e, _ in active)]))
        points.append(
            Point(
                at=moment,
                holds=holds,
                input_ids=ids,
                analyte=", ".join(dict.fromkeys(e.record.drug for e, _ in active))
                or trigger.record.drug,
                summary=f"medication: {drugs}",
                observed_value=total,
                observed_unit="mg/day" if total is not None else None,
                computed={
                    "active_medications": drugs,
                    "comparison": comparison,
                    **({"daily_dose_mg": _num(total)} if total is not None else {}),
                },
                learned_at=max(e.recorded_at for e, _ in active) if active else trigger.recorded_at,
            )
        )
    return points, problems


def _qualitative(
    rule: QualitativeRule, history: SubjectHistory, only: set[uuid.UUID] | None = None
) -> Judged:
    points: list[Point] = []
    for entry in _candidates(history, rule.loinc_codes, only):
        result = entry.result
        finding = result.qualitative
        flags = {flag.upper() for flag in result.abnormal_flags}
        if finding is None and flags & {"A", "AA", "H", "HH", "POS"}:
            finding = "positive"  # the laboratory flagged it abnormal
        if finding is None:
            continue
        sent = result.value_text or finding
        points.append(
            Point(
                at=result.collected_at,
                holds=finding in rule.results,
                input_ids=(entry.event_id,),
                analyte=_label(entry)
                if analyte_for(result.loinc_code or "")
                else (result.analyte_text or result.loinc_code or "test"),
                summary=f"{result.analyte_text or result.loinc_code} {sent}",
                computed={
                    "result": finding,
                    "reported": sent,
                    "comparison": f"{finding}; rule fires on {rule.describe()}",
                },
                learned_at=entry.recorded_at,
            )
        )
    return points, []


def _coded(
    rule: CodedResultRule, history: SubjectHistory, only: set[uuid.UUID] | None = None
) -> Judged:
    points: list[Point] = []
    for entry in _candidates(history, rule.loinc_codes, only):
        result = entry.result
        sent = result.value_text or (f"{result.value:f}" if result.value is not None else "")
        if not sent:
            continue
        holds = any(re.search(pattern, sent, re.IGNORECASE) for pattern in rule.patterns)
        points.append(
            Point(
                at=result.collected_at,
                holds=holds,
                input_ids=(entry.event_id,),
                analyte=result.analyte_text or result.loinc_code or "assessment",
                summary=f"{result.analyte_text or result.loinc_code} {sent}",
                computed={"reported": sent, "comparison": f"'{sent}': {rule.finding}"},
                learned_at=entry.recorded_at,
            )
        )
    return points, []


_KINDS: dict[type, Callable[[Any, SubjectHistory], Judged]] = {
    AbsoluteThresholdRule: _absolute,
    ReferenceLimitRule: _reference,
    BaselineChangeRule: _change,
    CreatinineClearanceRule: _clearance,
    HysLawRule: _hys_law,
    AdverseEventRule: _adverse,
    MedicationRule: _medication,
    QualitativeRule: _qualitative,
    CodedResultRule: _coded,
}

# kinds whose points depend on each entry alone (and on the baseline, which a later entry
# cannot change): the engine may judge just the new entries of a batch
_ENTRYWISE: dict[type, Callable[[Any, SubjectHistory, set[uuid.UUID]], Judged]] = {
    AbsoluteThresholdRule: _absolute,
    ReferenceLimitRule: _reference,
    BaselineChangeRule: _change,
    QualitativeRule: _qualitative,
    CodedResultRule: _coded,
    HysLawRule: _hys_law,  # a window looks back only: a later entry changes no earlier point
    CreatinineClearanceRule: _clearance,
}


def entrywise(rule: Rule, history: SubjectHistory, new_facts: set[uuid.UUID]) -> bool:
    """Whether these new facts leave the points of every earlier entry of this rule as they
    were. Not so when a count is derived from two results (a late total changes a
    percentage's point), nor when a new weight may be the one nearest to an earlier
    creatinine."""
    if isinstance(rule, AbsoluteThresholdRule) and rule.derive_from_percent:
        return False
    if isinstance(rule, CreatinineClearanceRule):
        weights = set(rule.weight_codes)
        return not any(
            (entry := history.labs.get(event_id)) is not None and entry.result.loinc_code in weights
            for event_id in new_facts
        )
    return type(rule) in _ENTRYWISE
