"""Hy's law: ALT or AST and total bilirubin above their multiples of ULN within a window,
unless alkaline phosphatase shows cholestasis (pure).
"""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from services.safety_rules.domain.conditions.lab_values import LimitRatio, ratio_to_limit, sex_of
from services.safety_rules.domain.conditions.points import (
    Judged,
    Point,
    Problem,
    analyte_label,
    as_reported,
    censored_problem,
    shown_number,
)
from services.safety_rules.domain.history import LabEntry, SubjectHistory
from services.safety_rules.domain.rule_kinds import HysLawRule
from services.safety_rules.domain.rule_terms import certainly, may_hold, surely_holds


def judge_hys_law(
    rule: HysLawRule, history: SubjectHistory, only: set[uuid.UUID] | None = None
) -> Judged:
    """Whether Hy's law holds at each result: ALT or AST above its multiple of ULN and total
    bilirubin above its multiple of ULN, both within the rule's window, unless an alkaline
    phosphatase in the window certainly shows cholestasis (at or above its multiple of ULN).
    ``only`` judges just those new results."""
    problems: list[Problem] = []
    groups = _hy_groups(rule)
    window = timedelta(days=rule.window_days)
    reading = _hy_span(history, groups, only, window)
    if reading is None:
        return [], problems  # no new result of the rule's analytes
    span, news = reading
    recorded = history.has_recorded(rule.id)
    if only is not None and not recorded:
        # the usual case: the new results' own problems, then whether each limb is crossed
        # in their windows, bilirubin first (fewer results): most often it is not, and
        # nothing else is read
        for entry, group in news:
            if (limb := _hy_limb(rule, entry, group, sex_of(history))) is not None:
                problems += limb[1]
        if not (
            _limb_crossed(rule, history, _BILIRUBIN, span)
            and _limb_crossed(rule, history, _TRANSAMINASE, span)
        ):
            return [], problems
    entries: list[list[LabEntry]] = []
    crossed = [False, False, False]
    ratios: dict[uuid.UUID, LimitRatio] = {}
    for group, codes in enumerate(groups):
        kept = []
        for entry in _within(history.results(*codes), span):
            if (limb := _hy_limb(rule, entry, group, sex_of(history))) is None:
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
        # each limb must be crossed for certain (a limb a censored result leaves open is a
        # data-quality issue of that result); cholestasis only excludes when certain: a
        # censored alkaline phosphatase that may be below its limit is like none at all
        core = surely_holds(
            ratios[top_t.event_id].ratio, top_t.result.comparator, ">", rule.transaminase_multiple
        ) and surely_holds(
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


# the groups of _hy_groups, by position
_TRANSAMINASE, _BILIRUBIN = 0, 1


def _hy_groups(rule: HysLawRule) -> tuple[tuple[str, ...], ...]:
    return (rule.transaminase_codes, rule.bilirubin_codes, rule.alkaline_phosphatase_codes)


def _hy_limb(
    rule: HysLawRule, entry: LabEntry, group: int, sex: str | None
) -> tuple[LimitRatio | None, tuple[Problem, ...], bool] | None:
    """An entry's multiple of its ULN, the problems found working it out, and whether it
    crosses its limb of the rule; worked out once per entry (None: no value)."""
    if entry.result.value is None:
        return None
    key = (id(rule), "hy", group, sex)
    judged: tuple[LimitRatio | None, tuple[Problem, ...], bool] | None = entry.memo.get(key)
    if judged is None:
        found: list[Problem] = []
        limit = ratio_to_limit(entry, "ULN", rule.fallback_limits, rule.id, found, sex)
        multiple = (rule.transaminase_multiple, rule.bilirubin_multiple, None)[group]
        above = False
        if limit is not None and multiple is not None:
            crossed = certainly(limit.ratio, entry.result.comparator, ">", multiple)
            if crossed is None:
                limb = ("ALT or AST", "total bilirubin")[group]
                found.append(
                    censored_problem(rule, entry, f"{limb} > {shown_number(multiple)} x ULN")
                )
            above = bool(crossed)
        judged = entry.memo[key] = (limit, tuple(found), above)
    return judged


def _limb_crossed(
    rule: HysLawRule, history: SubjectHistory, group: int, span: tuple[datetime, datetime]
) -> bool:
    """Whether any result of the limb collected within ``span`` crosses it."""
    return any(
        (limb := _hy_limb(rule, entry, group, sex_of(history))) is not None and limb[2]
        for entry in _within(history.results(*_hy_groups(rule)[group]), span)
    )


def _hy_span(
    history: SubjectHistory,
    groups: tuple[tuple[str, ...], ...],
    only: set[uuid.UUID] | None,
    window: timedelta,
) -> tuple[tuple[datetime, datetime], list[tuple[LabEntry, int]]] | None:
    """The collection times a judgement reads, and the new results with their groups:
    everything, or when only new results are judged, from a window before the earliest of
    them to the latest (None: none of them is a result of the rule's analytes)."""
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
        return None
    times = [entry.at for entry, _ in news]
    return (min(times) - window, max(times)), news


def _within(entries: list[LabEntry], span: tuple[datetime, datetime]) -> list[LabEntry]:
    """The entries (in collection-time order) collected within ``span``, both ends included."""
    low = bisect.bisect_left(entries, span[0], key=_collected)
    return entries[low : bisect.bisect_right(entries, span[1], lo=low, key=_collected)]


def _collected(entry: LabEntry) -> datetime:
    return entry.at


def _hy_point(
    rule: HysLawRule,
    entry: LabEntry,
    transaminase: LabEntry | None,
    bilirubin: LabEntry | None,
    phosphatase: LabEntry | None,
    ratios: Mapping[uuid.UUID, LimitRatio],
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
        label = analyte_label(item)
        computed[f"{label}/ULN"] = shown_number(ratio.ratio)
        computed[f"{name}_result"] = (
            f"{label} {as_reported(item)} (ULN {ratio.limit_text}) collected {item.at.isoformat()}"
        )
        parts.append(f"{label}/ULN = {shown_number(ratio.ratio)}")
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
        summary="; ".join(parts) or f"{analyte_label(entry)} {as_reported(entry)}",
        observed_value=peak,
        observed_unit="x ULN" if peak is not None else None,
        computed={**computed, "comparison": "; ".join(parts) + f"; rule {rule.describe()}"},
        learned_at=entry.recorded_at,
    )
