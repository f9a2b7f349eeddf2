"""Medications: a drug by route, or a daily dose (in equivalents of a reference drug)
against a threshold (pure).
"""

from __future__ import annotations

import re
from decimal import Decimal

from services.safety_rules.domain.conditions.points import Judged, Point, Problem, _num
from services.safety_rules.domain.event_rule_kinds import MedicationRule
from services.safety_rules.domain.history import SubjectHistory
from services.safety_rules.domain.rule_terms import compare

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
