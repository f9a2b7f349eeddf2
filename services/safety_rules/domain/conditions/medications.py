"""Medications: a drug by route or at all, or a daily dose (in exact equivalents of a
reference drug, or per kg of body weight) against a threshold (pure). What is derived names
each drug by Vigil's name for what it matched (``drug_names``) and its dose unit, frequency
and route in Vigil's spelling (``medication_words``), never the text as sent.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from services.safety_rules.domain.conditions.drug_names import (
    ATC_OF,
    Identified,
    identify,
    is_cjk,
    parts_of,
)
from services.safety_rules.domain.conditions.lab_values import numeric_results, value_in
from services.safety_rules.domain.conditions.medication_words import (
    is_single_dose,
    normalise,
    per_day,
    read_dose_unit,
    route_of,
    shown_dose_unit,
    shown_frequency,
    shown_route,
)
from services.safety_rules.domain.conditions.points import Judged, Point, Problem, shown_number
from services.safety_rules.domain.event_rule_kinds import MedicationRule
from services.safety_rules.domain.history import MedicationEntry, SubjectHistory, no_taking
from services.safety_rules.domain.rule_terms import compare
from shared.analytes import UnitNotConvertible
from shared.events import MedicationRecorded
from shared.plausibility import collected_before_birth

#: how far ahead of the time Vigil recorded it a medication's start may be. Ingest refuses
#: a start beyond its clock skew (``services/ingest/plausible_times``); the rules service
#: also reads facts published straight to the broker, and a planned start (a pulse booked
#: for next month) is real: only a start more than a year ahead cannot be placed
FUTURE_START_LIMIT = timedelta(days=366)


def _stem_matches(stem: str, found: Identified) -> bool:
    """Whether a word part of the drug begins ('cef-'), ends ('-penem') or contains
    ('-cillin-') the stem and is longer than it; a Chinese stem is looked for in the whole
    name, which has no word parts."""
    core = stem.strip("-")
    if is_cjk(core):
        return core in found.text
    # the word parts as sent and the INNs Vigil's table reads in them (a brand, a Chinese
    # name, a misspelling): "Ocrevus" is ocrelizumab, of the -mab stem
    inns = tuple(part for name in found.names for part in parts_of(name))
    for part in (*found.parts, *inns):
        if len(part) <= len(core):
            continue
        if stem.startswith("-") and stem.endswith("-"):
            if core in part:
                return True
        elif part.endswith(core) if stem.startswith("-") else part.startswith(core):
            return True
    return False


def _names(alias: str, found: Identified) -> bool:
    """Whether the drug as sent names ``alias`` (its word parts in order; Chinese inside)."""
    if is_cjk(alias):
        return normalise(alias) in found.text
    wanted = parts_of(alias)
    size = len(wanted)
    return any(found.parts[i : i + size] == wanted for i in range(len(found.parts) - size + 1))


def _drug(rule: MedicationRule, found: Identified) -> tuple[str, Fraction] | None:
    """Vigil's name for a drug the rule counts and the drug's equivalence factor, or None.
    A drug in one of the rule's classes but not named by it is called by the known drugs
    of that class it names, else by the class's ATC prefix or the stem it matched. A drug
    the rule excepts (and its ATC codes) never counts, whatever stem its name has."""
    if any(name in found.names or _names(name, found) for name in rule.except_drugs):
        return None
    excepted_atc = tuple(code for name in rule.except_drugs for code in ATC_OF.get(name, ()))
    codes = [code for code in found.atc if not (excepted_atc and code.startswith(excepted_atc))]
    for match in rule.drugs:
        if (
            match.name in found.names
            or any(code.startswith(atc.upper()) for code in codes for atc in match.atc_codes)
            or any(_names(alias, found) for alias in match.aliases)
        ):
            return match.name, match.factor
    for prefix in (p.upper() for p in rule.atc_prefixes):
        in_class = [
            name
            for name in found.names
            if any(code.startswith(prefix) for code in ATC_OF.get(name, ()))
        ]
        if in_class:
            return "/".join(in_class), Fraction(1)
        if any(code.startswith(prefix) for code in codes):
            return f"ATC {prefix}", Fraction(1)
    for stem in rule.name_stems:
        if _stem_matches(stem, found):
            return f"drug named {stem}", Fraction(1)
    return None


def _given(record: MedicationRecorded) -> str:
    """The dose as given: the dose, and the dose unit, frequency and route in Vigil's
    spelling (never the text as sent)."""
    return (
        f"{record.dose:f} {shown_dose_unit(record.dose_unit)} "
        f"{shown_frequency(record.frequency)} {shown_route(record.route)}"
    )


def _described(name: str, record: MedicationRecorded) -> str:
    """One medication as a signal says it: Vigil's drug name and the dose as given."""
    return f"{name} {_given(record)}"


def _doses_given(active: list[tuple[MedicationEntry, Fraction, str]]) -> str:
    """What was given, as a physician reads it beside the drug's name: the dose of the one
    drug taken, or each drug with its dose when several are summed."""
    if len(active) == 1:
        return _given(active[0][0].record)
    return " + ".join(_described(n, e.record) for e, _, n in active)


def _not_convertible(rule: MedicationRule, name: str, record: MedicationRecorded) -> str:
    """Why a dose cannot be summed, naming the fields, never their values."""
    fields = []
    unit = read_dose_unit(record.dose_unit)
    if unit is None:
        fields.append("dose unit not recognised")
    if (unit is None or not unit.per_day) and per_day(record.frequency) is None:
        missing = record.frequency is None or not record.frequency.strip()
        fields.append("frequency missing" if missing else "frequency not recognised")
    if unit is not None and unit.per_kg:
        fields.append("no body weight for a dose per kg")
    return f"rule {rule.id}: {name} cannot be turned into mg/day: {', '.join(fields)}"


def _implausible_start(entry: MedicationEntry, history: SubjectHistory) -> str | None:
    """Why a medication's start cannot be right (more than a year after Vigil learned
    of it; before the subject's birth), naming the field, never its value."""
    start = entry.record.start
    if start > entry.recorded_at + FUTURE_START_LIMIT:
        return (
            "a medication's start is more than a year after Vigil recorded it: the "
            "medication is kept as sent and not judged by any rule; ask the site to check "
            "the start date"
        )
    enrolment = history.enrolment
    if enrolment is not None and collected_before_birth(start, enrolment.birth_date):
        return (
            "a medication's start is before the subject's date of birth: one of the two is "
            "wrong, so the medication is kept as sent and not judged by any rule; ask the "
            "site to check the dates"
        )
    return None


def _daily_mg(
    rule: MedicationRule, history: SubjectHistory, record: MedicationRecorded
) -> Fraction | None:
    """A medication's mg on a day it is taken, or None when it cannot be told. A dose per
    day ("mg/d") is the day's total; a dose per kg is times the subject's body weight
    nearest in time to the start. A regimen taken less often than daily (QOD, QW) counts
    its whole dose on the day it is taken for a protocol limit in mg/day (the protocol's
    "> 10 mg/day": 60 mg prednisone once weekly is 60 mg that day), and averaged over its
    interval for a per-kg rule (AAO 2016's 5 mg/kg/day is a long-term average)."""
    unit = read_dose_unit(record.dose_unit)
    if unit is None:
        return None
    mg = Fraction(record.dose) * unit.mg
    if unit.per_kg:
        weight = _nearest_weight(history, rule, record.start)
        if weight is None:
            return None
        mg *= Fraction(weight[0])
    if unit.per_day:
        return mg
    times = per_day(record.frequency)
    if times is None:
        return None
    if rule.criterion == "daily-dose":
        times = max(times, Fraction(1))
    return mg * times


def _stop(rule: MedicationRule, record: MedicationRecorded) -> datetime | None:
    """When a medication stops counting: its stop, or for a single dose ("once", STAT,
    st) sent without one, a day after its start: one administration is a dose on its day
    only. A prohibited drug (a route or any-drug rule) stands from its start: one dose of
    rituximab or a live vaccine acts for months."""
    daily = rule.criterion.startswith("daily-dose")
    if record.stop is None and daily and is_single_dose(record.frequency):
        return record.start + timedelta(days=1)
    return record.stop


def _decimal(value: Fraction) -> Decimal:
    """An exact daily dose as a decimal to show and store: to 4 places (20/3 is 6.6667);
    the comparison is made on the fraction, never on this."""
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    shown = exact.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP).normalize()
    # normalize writes 20 as 2E+1: an integer is kept an integer
    return shown.quantize(Decimal(1)) if shown == shown.to_integral_value() else shown


Counted = tuple[MedicationEntry, Fraction, str, datetime | None]


def _counted(rule: MedicationRule, history: SubjectHistory) -> tuple[list[Counted], list[Problem]]:
    """The medications the rule counts, each with its daily dose in mg of the reference
    drug (0 when the rule does not sum doses) and Vigil's name for it."""
    problems: list[Problem] = []
    counted: list[Counted] = []
    for entry in history.medications.values():
        record = entry.record
        if no_taking(record):
            continue  # a taking of no length (a FHIR record withdrawn): counts at no moment
        matched = _drug(rule, identify(record.drug, record.drug_code))
        if matched is None:
            continue
        name, factor = matched
        why = _implausible_start(entry, history)
        if why is not None:
            problems.append(Problem("implausible-time", why, entry.event_id, ""))
            continue
        if rule.routes:
            route = route_of(record.route)
            if route is None:
                problems.append(
                    Problem(
                        "route-not-recognised",
                        f"rule {rule.id}: {name}: the route field is not a route Vigil "
                        "recognises, so the rule cannot tell whether it counts",
                        entry.event_id,
                        rule.id,
                    )
                )
                continue
            if route not in rule.routes:
                continue
        stop = _stop(rule, record)
        if rule.criterion in ("route", "any"):
            counted.append((entry, Fraction(0), name, stop))
            continue
        daily = _daily_mg(rule, history, record)
        if daily is None:
            problems.append(
                Problem(
                    "dose-not-convertible",
                    _not_convertible(rule, name, record),
                    entry.event_id,
                    rule.id,
                )
            )
            continue
        counted.append((entry, daily * factor, name, stop))
    return counted, problems


Weight = tuple[Decimal, datetime, uuid.UUID, str]


def _nearest_weight(history: SubjectHistory, rule: MedicationRule, at: datetime) -> Weight | None:
    """The subject's body weight nearest in time to ``at``: a weight result, else the
    enrolment weight."""
    candidates: list[Weight] = []
    for entry in numeric_results(history.results(*rule.weight_codes)):
        try:
            kg = value_in(entry, "kg")
        except UnitNotConvertible:
            continue
        if kg > 0:
            candidates.append((kg, entry.at, entry.event_id, "weight result"))
    enrolment = history.enrolment_weight()
    if enrolment is not None and enrolment[0] > 0:
        candidates.append((*enrolment, "enrolment record"))
    if not candidates:
        return None
    return min(candidates, key=lambda c: (abs((c[1] - at).total_seconds()), c[1]))


def _weighed_at(
    history: SubjectHistory, rule: MedicationRule, counted: list[Counted]
) -> set[datetime]:
    """When a per-kg rule's subject was weighed while a counted medication was taken: a new
    weight changes the dose per kg from then on."""
    if rule.criterion != "daily-dose-per-kg":
        return set()
    return {
        entry.at
        for entry in history.results(*rule.weight_codes)
        if any(
            e.record.start <= entry.at and (stop is None or stop > entry.at)
            for e, _, _, stop in counted
        )
    }


def _daily_words(
    rule: MedicationRule,
    total: Decimal,
    unit: str,
    active: list[tuple[MedicationEntry, Fraction, str]],
) -> str:
    """The day's sum as the rule judges it, labelled as an equivalent of the reference
    drug unless only that drug was taken ("625 mg/day prednisone-equivalent")."""
    reference = rule.reference_drug
    if reference and any(name != reference for _, _, name in active):
        return f"{shown_number(total)} {unit} {reference}-equivalent"
    return f"{shown_number(total)} {unit}"


def judge_medication(rule: MedicationRule, history: SubjectHistory) -> Judged:
    """Whether, at each moment a medication starts or stops (or a weight changes), the
    subject takes a drug the rule names (by route, at all, or at a daily dose in mg/day or
    mg/kg/day, summed as the reference drug's equivalent), against the rule's threshold."""
    counted, problems = _counted(rule, history)
    moments = sorted(
        {m for entry, _, _, stop in counted for m in (entry.record.start, stop) if m is not None}
        | _weighed_at(history, rule, counted)
    )
    points: list[Point] = []
    per_kg = rule.criterion == "daily-dose-per-kg"
    for moment in moments:
        active = [
            (e, d, n)
            for e, d, n, stop in counted
            if e.record.start <= moment and (stop is None or stop > moment)
        ]
        active.sort(key=lambda item: item[0].record.start)
        trigger, trigger_name = next(
            ((e, n) for e, _, n, stop in counted if moment in (e.record.start, stop)),
            (active[0][0], active[0][2]) if active else (counted[0][0], counted[0][2]),
        )
        drugs = ", ".join(_described(n, e.record) for e, _, n in active) or "none"
        ids = [trigger.event_id, *(e.event_id for e, _, _ in active)]
        computed: dict[str, str] = {"active_medications": drugs}
        total: Decimal | None = None
        unit: str | None = None
        if rule.criterion in ("route", "any"):
            holds = bool(active)
            computed["comparison"] = f"active: {drugs}; rule {rule.describe()}"
        else:
            assert rule.threshold is not None
            daily = sum((d for _, d, _ in active), Fraction(0))
            reference = f"{rule.reference_drug}-equivalent " if rule.reference_drug else ""
            computed["daily_dose_mg"] = shown_number(_decimal(daily))
            if per_kg:
                weight = _nearest_weight(history, rule, moment)
                if weight is None:
                    if active:
                        problems.append(
                            Problem(
                                "missing-input",
                                f"rule {rule.id}: no body weight (enrolment or a body weight "
                                "result) to turn the daily dose into mg/kg/day",
                                trigger.event_id,
                                rule.id,
                            )
                        )
                    continue
                kg, weighed_at, weight_id, source = weight
                value = daily / Fraction(kg)
                total, unit = _decimal(value), "mg/kg/day"
                ids.append(weight_id)
                computed["weight_kg"] = f"{shown_number(kg)} ({source}, {weighed_at.isoformat()})"
                computed["dose_mg_per_kg"] = shown_number(total)
            else:
                value, unit = daily, "mg/day"
                total = _decimal(value)
            holds = compare(value, rule.operator, Fraction(rule.threshold))
            computed["comparison"] = (
                f"{shown_number(total)} {unit} {reference}{rule.describe()}".replace(
                    " -equivalent", ""
                )
            )
            # the dose given first, the sum in the reference drug labelled as such: 625
            # mg/day of prednisone is not what a 500 mg methylprednisolone pulse gave
            computed["daily_dose"] = _daily_words(rule, total, unit, active)
            if active:
                computed["dose_given"] = _doses_given(active)
        points.append(
            Point(
                at=moment,
                holds=holds,
                input_ids=tuple(dict.fromkeys(ids)),
                analyte=", ".join(dict.fromkeys(n for _, _, n in active)) or trigger_name,
                summary=f"medication: {drugs}"
                + (f" ({computed['daily_dose']})" if active and "daily_dose" in computed else ""),
                observed_value=total,
                observed_unit=unit,
                computed=computed,
                learned_at=max(e.recorded_at for e, _, _ in active)
                if active
                else trigger.recorded_at,
            )
        )
    return points, problems
