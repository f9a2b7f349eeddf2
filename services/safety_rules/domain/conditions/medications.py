"""Medications: a drug by route, or a daily dose (in equivalents of a reference drug)
against a threshold (pure). What is derived names each drug by the rule's name for it and
its dose unit, frequency and route in Vigil's spelling (:mod:`.medication_words`).
"""

from __future__ import annotations

import re
from decimal import Decimal

from services.safety_rules.domain.conditions.medication_words import (
    known_route,
    mg_per_unit,
    per_day,
    shown_dose_unit,
    shown_frequency,
    shown_route,
)
from services.safety_rules.domain.conditions.points import Judged, Point, Problem, _num
from services.safety_rules.domain.event_rule_kinds import MedicationRule
from services.safety_rules.domain.history import SubjectHistory
from services.safety_rules.domain.rule_terms import compare
from shared.events import MedicationRecorded


def _drug(rule: MedicationRule, drug: str, code: str | None) -> tuple[str, Decimal] | None:
    """The rule's name for a drug it counts and the drug's equivalence factor, or None.
    A drug in one of the rule's classes but not named by it is called by the class's ATC
    prefix as the rule gives it."""
    name = drug.lower()
    for match in rule.drugs:
        if code and any(code.upper().startswith(atc.upper()) for atc in match.atc):
            return match.name, match.factor
        if any(
            re.search(rf"\b{re.escape(alias.lower())}\b", name)
            for alias in (match.name, *match.aliases)
        ):
            return match.name, match.factor
    for prefix in rule.atc_prefixes:
        if code and code.upper().startswith(prefix.upper()):
            return f"ATC {prefix}", Decimal(1)
    return None


def _described(name: str, record: MedicationRecorded, rule: MedicationRule) -> str:
    """One medication as a signal says it: the rule's drug name, the dose, and the dose
    unit, frequency and route in Vigil's spelling (never the text as sent)."""
    return (
        f"{name} {record.dose:f} {shown_dose_unit(record.dose_unit)} "
        f"{shown_frequency(record.frequency)} {shown_route(record.route, rule.routes)}"
    )


def _not_convertible(rule: MedicationRule, name: str, record: MedicationRecorded) -> str:
    """Why a dose cannot be summed, naming the fields, never their values."""
    fields = []
    if mg_per_unit(record.dose_unit) is None:
        fields.append("dose unit not recognised")
    if per_day(record.frequency) is None:
        fields.append("frequency not recognised")
    return f"rule {rule.id}: {name} cannot be turned into mg/day: {', '.join(fields)}"


def _medication(rule: MedicationRule, history: SubjectHistory) -> Judged:
    problems: list[Problem] = []
    counted = []
    for entry in history.medications.values():
        record = entry.record
        matched = _drug(rule, record.drug, record.drug_code)
        if matched is None:
            continue
        name, factor = matched
        if rule.routes and known_route(record.route, rule.routes) not in rule.routes:
            continue
        if rule.criterion == "route":
            counted.append((entry, Decimal(0), name))
            continue
        mg, times = mg_per_unit(record.dose_unit), per_day(record.frequency)
        if mg is None or times is None:
            problems.append(
                Problem(
                    "dose-not-convertible",
                    _not_convertible(rule, name, record),
                    entry.event_id,
                    rule.id,
                )
            )
            continue
        counted.append((entry, record.dose * mg * times * factor, name))
    moments = sorted(
        {
            m
            for entry, _, _ in counted
            for m in (entry.record.start, entry.record.stop)
            if m is not None
        }
    )
    points: list[Point] = []
    for moment in moments:
        active = [
            (e, d, n)
            for e, d, n in counted
            if e.record.start <= moment and (e.record.stop is None or e.record.stop > moment)
        ]
        active.sort(key=lambda item: item[0].record.start)
        trigger, trigger_name = next(
            (e, n) for e, _, n in counted if e.record.start == moment or e.record.stop == moment
        )
        drugs = ", ".join(_described(n, e.record, rule) for e, _, n in active) or "none"
        if rule.criterion == "route":
            holds = bool(active)
            total = None
            comparison = f"active: {drugs}; rule {rule.describe()}"
        else:
            assert rule.threshold is not None
            total = sum((d for _, d, _ in active), Decimal(0))
            holds = compare(total, rule.operator, rule.threshold)
            comparison = (
                f"{_num(total)} mg/day {rule.reference_drug or ''}-equivalent {rule.describe()}"
            ).replace(" -equivalent", "")
        ids = tuple(dict.fromkeys([trigger.event_id, *(e.event_id for e, _, _ in active)]))
        points.append(
            Point(
                at=moment,
                holds=holds,
                input_ids=ids,
                analyte=", ".join(dict.fromkeys(n for _, _, n in active)) or trigger_name,
                summary=f"medication: {drugs}",
                observed_value=total,
                observed_unit="mg/day" if total is not None else None,
                computed={
                    "active_medications": drugs,
                    "comparison": comparison,
                    **({"daily_dose_mg": _num(total)} if total is not None else {}),
                },
                learned_at=max(e.recorded_at for e, _, _ in active)
                if active
                else trigger.recorded_at,
            )
        )
    return points, problems
