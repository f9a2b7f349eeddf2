"""What a condition kind returns: the points where a rule was judged and the problems
that kept it from judging, and how a lab result's point is written and remembered (pure).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from services.safety_rules.domain.history import LabEntry
from services.safety_rules.domain.rule_kinds import Rule
from shared.analytes import analyte_for, shown_unit
from shared.events.payloads import Comparator, DataQualityProblem


@dataclass(frozen=True)
class Point:
    """One judgement of a rule at a moment of clinical time."""

    at: datetime
    holds: bool
    input_ids: tuple[uuid.UUID, ...]
    analyte: str
    summary: str = field(default="", compare=False)
    grade: int | None = None
    observed_value: Decimal | None = None
    observed_unit: str | None = None
    observed_comparator: Comparator | None = None
    computed: Mapping[str, Any] = field(default_factory=dict, compare=False)
    episode_key: str | None = None
    learned_at: datetime | None = None
    serious: bool = False

    @property
    def sort_key(self) -> tuple[datetime, int]:
        return (self.at, 1 if self.holds else 0)


@dataclass(frozen=True)
class Problem:
    """Something the rule could not judge: a data-quality issue for the data manager."""

    issue: DataQualityProblem
    detail: str
    related_event_id: uuid.UUID
    rule_id: str


Judged = tuple[list[Point], list[Problem]]


class LazyMapping(Mapping[str, Any]):
    """Computed values built when first read: most points are in range and never explained."""

    def __init__(self, build: Callable[[], Mapping[str, Any]]) -> None:
        self._build: Callable[[], Mapping[str, Any]] | None = build
        self._values: Mapping[str, Any] = {}

    def _materialised(self) -> Mapping[str, Any]:
        if self._build is not None:
            self._values, self._build = self._build(), None
        return self._values

    def __getitem__(self, key: str) -> Any:
        return self._materialised()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._materialised())

    def __len__(self) -> int:
        return len(self._materialised())


#: one entry's judgement: its point (None: no point made) and the problems it raised
EntryJudgement = tuple[Point | None, tuple[Problem, ...]]


def memoised_judgement(
    entry: LabEntry, key: tuple[object, ...], judge_entry: Callable[[], EntryJudgement]
) -> EntryJudgement:
    """Judge an entry once per rule and per the other facts the judgement used (``key``);
    a batch then judges only its new entries, however long the subject's history."""
    if key not in entry.memo:
        entry.memo[key] = judge_entry()
    judgement: EntryJudgement = entry.memo[key]
    return judgement


def judge_each_entry(
    entries: Iterable[LabEntry],
    key: Callable[[LabEntry], tuple[object, ...]],
    judge_entry: Callable[[LabEntry], EntryJudgement],
) -> Judged:
    """Each entry judged by ``judge_entry`` (memoised under ``key(entry)``): the points made
    and the problems found."""
    points: list[Point] = []
    problems: list[Problem] = []
    for entry in entries:
        point, found = memoised_judgement(entry, key(entry), functools.partial(judge_entry, entry))
        if point is not None:
            points.append(point)
        problems += found
    return points, problems


def shown_number(value: Decimal, places: str = "0.01") -> str:
    """A value for people: at most two decimals, no trailing zeros."""
    if value != value.to_integral_value():
        value = value.quantize(Decimal(places))
    return f"{value.normalize():f}"


def analyte_label(entry: LabEntry) -> str:
    """The result's analyte by Vigil's catalogue name, else its LOINC code."""
    analyte = analyte_for(entry.result.loinc_code or "")
    return analyte.name if analyte else (entry.result.loinc_code or "result")


def _as_sent(comparator: str | None, value: Decimal | None) -> str | None:
    """A value as the laboratory sent it, its comparator included ("< 0.5")."""
    if value is None:
        return None
    return f"{comparator} {value:f}" if comparator else f"{value:f}"


def as_reported(entry: LabEntry) -> str:
    """The result's value and unit as the laboratory sent them ("< 0.5 g/dL")."""
    result = entry.result
    value = _as_sent(result.comparator, result.value) or "?"
    return f"{value} {shown_unit(result.unit)}".strip()


def censored_problem(rule: Rule, entry: LabEntry, condition: str) -> Problem:
    """A censored result the rule cannot judge: it may or may not meet the condition, so
    no point is made (it neither raises nor resolves) and the exact value is asked for."""
    return Problem(
        "censored-result",
        f"rule {rule.id}: {analyte_label(entry)} was reported as {as_reported(entry)}, which "
        f"may or may not meet {condition}; ask the laboratory for the exact value",
        entry.event_id,
        rule.id,
    )


def lab_point(
    rule: Rule,
    entry: LabEntry,
    *,
    holds: bool,
    grade: int | None,
    value: Decimal,
    unit: str,
    comparison: str | Callable[[], str],
    extra: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
    input_ids: tuple[uuid.UUID, ...] | None = None,
) -> Point:
    """The point of one lab result: whether it holds, its grade, and how it was judged
    (``comparison``, ``extra``), built only when a reader asks (most are never explained)."""
    result = entry.result

    def explain() -> dict[str, Any]:
        computed: dict[str, Any] = {
            "reported_value": _as_sent(result.comparator, result.value),
            "reported_unit": shown_unit(result.unit) or None,
            "value_in_rule_unit": shown_number(value),
            "rule_unit": unit,
            "comparison": comparison if isinstance(comparison, str) else comparison(),
        }
        if result.comparator:
            computed["censored"] = f"reported as {result.comparator}{result.value:f}"
        if result.reference_low is not None or result.reference_high is not None:
            low = shown_number(result.reference_low) if result.reference_low is not None else ""
            high = shown_number(result.reference_high) if result.reference_high is not None else ""
            computed["reference_range"] = f"{low}-{high} {shown_unit(result.unit)}".strip()
        if extra:
            computed.update(extra if isinstance(extra, Mapping) else extra())
        return computed

    return Point(
        at=result.collected_at,
        holds=holds,
        input_ids=input_ids or (entry.event_id,),
        analyte=analyte_label(entry),
        summary=f"{analyte_label(entry)} {as_reported(entry)}",
        grade=grade,
        observed_value=result.value,
        observed_unit=shown_unit(result.unit) or None,
        observed_comparator=result.comparator,
        computed=LazyMapping(explain),
        learned_at=entry.recorded_at,
    )
