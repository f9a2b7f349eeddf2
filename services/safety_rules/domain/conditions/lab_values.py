"""Reading lab results for a rule: which ones, their value in the rule's unit, and their
multiple of the laboratory's ULN or LLN (pure).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, cast

from services.safety_rules.domain.conditions.points import (
    Problem,
    analyte_label,
    as_reported,
    shown_number,
)
from services.safety_rules.domain.history import LabEntry, SubjectHistory
from services.safety_rules.domain.rule_terms import FallbackLimit
from shared.analytes import UnitNotConvertible, analyte_for, shown_unit
from shared.events.payloads import DataQualityProblem, LabResultReported
from shared.plausibility import implausible_reference_range


def lab_limits(result: LabResultReported) -> tuple[Decimal | None, Decimal | None]:
    """The laboratory's reference limits (low, high) as far as they can be used: neither
    when the range cannot be right (low above high: a ULN of 7 U/L from a range '40-7'
    would make every ALT a grade 3; a ULN of 0 or beyond anything physiological: see
    ``shared.plausibility.implausible_reference_range``), so the rule falls back."""
    if implausible_reference_range(result) is not None:
        return None, None
    return result.reference_low, result.reference_high


def value_in(entry: LabEntry, unit: str) -> Decimal:
    """The result's value expressed in ``unit`` (raises UnitNotConvertible)."""
    key = ("value_in", unit)
    if key not in entry.memo:
        try:
            entry.memo[key] = _value_in(entry, unit)
        except UnitNotConvertible as error:
            entry.memo[key] = error
    value = entry.memo[key]
    if isinstance(value, UnitNotConvertible):
        raise value
    assert isinstance(value, Decimal)
    return value


def _value_in(entry: LabEntry, unit: str) -> Decimal:
    result = entry.result
    analyte = analyte_for(result.loinc_code or "")
    if analyte is None or result.value is None:
        raise UnitNotConvertible(f"{result.loinc_code}: not a numeric catalogued analyte")
    if result.canonical_value is not None and result.canonical_unit == analyte.canonical_unit:
        canonical = result.canonical_value
    elif result.unit is None:
        raise UnitNotConvertible(f"{analyte.name} was reported without a unit")
    else:
        canonical = analyte.to_canonical(result.value, result.unit)
    return canonical / analyte.to_canonical(Decimal(1), unit)


def candidate_results(
    history: SubjectHistory, codes: tuple[str, ...], only: set[uuid.UUID] | None
) -> list[LabEntry]:
    """The current results of ``codes``, or only those in ``only`` (the new ones, for the
    engine's shortcut), by collection time."""
    if only is None:
        return history.results(*codes)
    chosen = [
        entry
        for event_id in only
        if (entry := history.labs.get(event_id)) is not None and entry.result.loinc_code in codes
    ]
    chosen.sort(key=lambda entry: (entry.at, entry.stream_version))
    return chosen


def sex_of(history: SubjectHistory) -> str | None:
    """The subject's sex as HL7 table 0001 codes it (None: not enrolled)."""
    return history.enrolment.sex.value if history.enrolment is not None else None


def numeric_results(entries: Iterable[LabEntry]) -> list[LabEntry]:
    """The entries that carry a number (a text-only result is no rule's number)."""
    return [e for e in entries if e.result.value is not None]


@dataclass(frozen=True)
class LimitRatio:
    """A result as a multiple of a reference limit, and that limit as people read it."""

    ratio: Decimal
    limit_text: str


def ratio_to_limit(
    entry: LabEntry,
    which: Literal["ULN", "LLN"],
    fallbacks: Mapping[str, FallbackLimit],
    rule_id: str,
    problems: list[Problem],
    sex: str | None = None,
) -> LimitRatio | None:
    """The result as a multiple of its laboratory's ULN or LLN (a pack fallback when the
    laboratory sent none, which is raised as a data-quality problem; a limit by sex is the
    subject's, ``sex`` as HL7 table 0001 codes it); worked out once per entry, its problems
    added to ``problems`` each time."""
    key = ("limit", which, id(fallbacks), rule_id, sex)
    if key not in entry.memo:
        entry.memo[key] = _limit_of(entry, which, fallbacks, rule_id, sex)
    limit, found = entry.memo[key]
    problems += found
    return cast("LimitRatio | None", limit)


def _limit_of(
    entry: LabEntry,
    which: Literal["ULN", "LLN"],
    fallbacks: Mapping[str, FallbackLimit],
    rule_id: str,
    sex: str | None,
) -> tuple[LimitRatio | None, tuple[Problem, ...]]:
    result = entry.result
    assert result.value is not None
    low, high = lab_limits(result)
    limit = high if which == "ULN" else low
    analyte = analyte_for(result.loinc_code or "")
    fallback = fallbacks.get(analyte.name) if analyte is not None else None
    bound, whose = fallback.for_sex(sex, which) if fallback is not None else (Decimal(0), "")
    why = implausible_reference_range(result)
    if limit is not None and limit > 0 and which == "ULN" and fallback is not None:
        why = _beyond_any_laboratory(limit, result.unit, bound, fallback.unit, analyte)
    if limit is not None and limit > 0 and why is None:
        limit_text = f"{shown_number(limit)} {shown_unit(result.unit)}".strip()
        return LimitRatio(result.value / limit, limit_text), ()
    implausible = why is not None
    came = (
        f"with a reference range that cannot be right ({why}), which is set aside"
        if implausible
        else "without a reference range"
    )
    detail = (
        f"{analyte_label(entry)} {as_reported(entry)} collected "
        f"{result.collected_at.isoformat()} came {came}, so its {which} is unknown"
    )
    if fallback is None:
        detail += "; the rule could not judge it"
    else:
        detail += (
            f"; judged against the rule pack's fallback {which} "
            f"{shown_number(bound)} {fallback.unit}" + (f" ({whose})" if whose else "")
        )
    issue: DataQualityProblem = (
        "reference-range-implausible" if implausible else "reference-range-missing"
    )
    problem = (Problem(issue, detail, entry.event_id, rule_id),)
    if fallback is None:
        return None, problem
    try:
        value = value_in(entry, fallback.unit)
    except UnitNotConvertible:
        return None, problem
    return LimitRatio(
        value / bound,
        f"{shown_number(bound)} {fallback.unit} (fallback" + (f", {whose})" if whose else ")"),
    ), problem


#: a laboratory's ULN more than this many times the rule pack's fallback ULN (itself a
#: typical laboratory's) is no laboratory's: "7-4000" U/L for ALT is "7-40.00" with its
#: decimal point lost (ALT ULNs lie between about 30 and 60 U/L, IFCC)
_ULN_MULTIPLE_OF_FALLBACK = Decimal(10)


def _beyond_any_laboratory(
    limit: Decimal, unit: str | None, fallback: Decimal, fallback_unit: str, analyte: Any
) -> str | None:
    """Why a laboratory's ULN is beyond any laboratory's (compared with the pack's
    fallback ULN in the same unit), or None (also when the units do not convert)."""
    if analyte is None or unit is None or fallback <= 0:
        return None
    try:
        ratio = analyte.to_canonical(limit, unit) / analyte.to_canonical(fallback, fallback_unit)
    except UnitNotConvertible:
        return None
    if ratio <= _ULN_MULTIPLE_OF_FALLBACK:
        return None
    return (
        f"its high limit is more than {_ULN_MULTIPLE_OF_FALLBACK:f} times the rule pack's "
        "fallback ULN, beyond any laboratory's"
    )
