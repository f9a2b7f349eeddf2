"""FHIR R4 MedicationStatement and MedicationAdministration to MedicationRecorded (pure).

What is read (FHIR R4 4.0.1; validated with fhir.resources' R4B models, which changed
nothing read here):

- **subject**: the Patient reference, resolved as an Observation's is (fhir_subjects).
- **drug**: ``medicationCodeableConcept`` (its ``text``, else the display of a coding, else
  its ATC code, else another coding as ``system|code``, RxNorm first, then SNOMED CT: a
  coded drug is a drug, and the rules' drug table reads the codes of the drugs the pack
  counts), or ``medicationReference`` to a contained (``#id``) or bundled Medication
  whose ``code`` is read the same way (else the reference's ``display``). An ATC coding
  (system ``http://www.whocc.no/atc``) is the record's ``drug_code``. No drug: refused,
  naming ``medication[x]``.
- **dose**: ``dosage[0].doseAndRate[0].doseQuantity`` (MedicationStatement) or
  ``dosage.dose`` (MedicationAdministration): its value, and its UCUM ``code`` else its
  ``unit``. What is not one readable dose (several dosage lines, a ``doseRange``, only a
  ``rate[x]``, no dose at all, a quantity without a positive value) is recorded with dose
  1 and the unit ``(dose not read)``, which no unit table reads: the drug still counts for
  the rules that need no dose (a prohibited drug), and a rule that sums doses raises
  ``dose-not-convertible`` for it, never a guess. A dose quantity without a unit is
  recorded with the unit ``(no unit)`` for the same reason. A volume or a count of
  tablets or capsules of a Medication (contained or bundled) whose one active ingredient
  states its strength (``ingredient.strength``, a Ratio: 40 mg per 1 mL) is recorded as
  the ingredient's amount: 12.5 mL is 500 mg, 4 ``{tbl}`` of 5 mg per tablet 20 mg.
- **route**: a coding (one of SNOMED CT, HL7 v3 RouteOfAdministration or EDQM first) as
  ``code|display``, then the route's text; none: ``(route not given)``, which a rule that
  asks for a route raises as ``route-not-recognised``. The rules read the code first
  (FHIR R4: the code carries the meaning; a display may be a fully specified name such as
  "Intravenous route (qualifier value)"), the display when they do not know the code,
  then the text.
- **frequency** (MedicationStatement): ``dosage[0].timing.code`` (HL7 GTSAbbreviation:
  BID, TID, QID, QD, QOD, AM, PM, BED, WK, MO, Q<n>H; or its text) or ``timing.repeat``
  (``frequency`` per ``period`` ``periodUnit``: 2 per 1 d is ``2/day``, 1 per 8 h ``q8h``,
  1 per 1 wk ``QW``). No timing is no frequency (as the JSON API's absent one: not taken
  as once a day, so a summing rule raises ``dose-not-convertible``); a timing that says
  no single rate (a range, events only, a rate no table names) is ``(timing not read)``,
  so a summing rule raises ``dose-not-convertible``. Times listed by ``timeOfDay``, or
  several ``when`` events over one day, are that many a day (``2/day``) when the
  frequency is 1 per day or says the same count, and not read otherwise.
  A MedicationAdministration is one dose: frequency ``once``, counted for 24 hours from
  its start (or to the end of its ``effectivePeriod`` when later), so two doses on one day
  are summed and a single dose does not stand for ever.
- **start/stop**: ``effectivePeriod`` start and end (an end takes in the time it names:
  a day's end is the next midnight), or ``effectiveDateTime``; a MedicationStatement
  without effective[x] (0..1 in R4) is taken as of ``dateAsserted``. A statement's
  dosage ``timing.repeat.bounds[x]`` ends its course too (``boundsPeriod.end``,
  ``boundsDuration`` from the start, a ``boundsRange``'s high), the earlier end winning.
- **status**: MedicationStatement active, completed, stopped, on-hold and unknown, and
  MedicationAdministration completed, in-progress, on-hold, stopped and unknown are a
  taking. MedicationStatement entered-in-error, not-taken and intended, and
  MedicationAdministration not-done and entered-in-error are **not a taking**: they are
  recorded with the record's id and a stop equal to its start, a taking of no length, so
  they replace an earlier record of the same id (as a JSON record with the same
  ``medication_id`` does) and count at no moment; a signal the earlier record raised is
  retracted.
- **category**: ``concomitant`` (neither resource says whether the drug is the study's;
  the rules do not read the category).
- **identity**: ``identifier[0]`` (system and value together) else the logical ``id`` is
  the ``medication_id``; a later resource with the same identity replaces the record.
  With neither, a digest of the subject, drug and start (never the drug's text itself).

Text the rules read (drug, route, frequency) is kept in the record as sent, as the JSON
API keeps it; what is derived names each in Vigil's spelling (medication_words), and every
issue here names an element, never a value. Each field is bounded as the payload bounds
it; a route, unit or timing text past its bound is recorded as not read.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal
from fractions import Fraction
from typing import Any

from fhir.resources.R4B.medication import Medication
from fhir.resources.R4B.medicationadministration import MedicationAdministration
from fhir.resources.R4B.medicationstatement import MedicationStatement
from pydantic import ValidationError

from services.ingest.domain.fhir_identity import bounded
from services.ingest.domain.fhir_issues import Issue, validation_issues
from services.ingest.domain.fhir_subjects import (
    LocalPatients,
    bundle_resources,
    contained_patients,
    local_key,
    referenced_subject,
)
from services.ingest.domain.fhir_times import moment
from services.ingest.domain.subject_identifiers import SubjectIdentifierSystem
from shared.events import MedicationRecorded, SubjectEvent
from shared.events.values import CODE_PATTERN

ATC = "http://www.whocc.no/atc"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
V3_ROUTE = "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration"
EDQM = "http://standardterms.edqm.eu"
V3_FORM = "http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm"
# route code systems whose codes are read before a coding's display
_ROUTE_SYSTEMS = (SNOMED, V3_ROUTE, EDQM)
KINDS = ("MedicationStatement", "MedicationAdministration")

DOSE_NOT_READ = "(dose not read)"
NO_UNIT = "(no unit)"
ROUTE_NOT_GIVEN = "(route not given)"
ROUTE_NOT_READ = "(route not read)"
TIMING_NOT_READ = "(timing not read)"

# R4 medication-statement-status and medication-admin-status: which say a taking
_TAKING = {
    "MedicationStatement": frozenset({"active", "completed", "stopped", "on-hold", "unknown"}),
    "MedicationAdministration": frozenset(
        {"completed", "in-progress", "on-hold", "stopped", "unknown"}
    ),
}
_NOT_TAKING = {
    "MedicationStatement": frozenset({"entered-in-error", "not-taken", "intended"}),
    "MedicationAdministration": frozenset({"not-done", "entered-in-error"}),
}
# HL7 v3 GTSAbbreviation codes (FHIR R4 timing-abbreviation) the frequency table does not
# spell itself, as the spelling it reads
_GTS = {"AM": "QAM", "PM": "QPM", "BED": "QHS", "WK": "QW", "MO": "monthly"}
# R4 units-of-time: how many of each make a day
_PER_DAY = {
    "s": Fraction(86400),
    "min": Fraction(1440),
    "h": Fraction(24),
    "d": Fraction(1),
    "wk": Fraction(1, 7),
    "mo": Fraction(1, 30),
    "a": Fraction(1, 365),
}
# rates below once a day the frequency table names
_SLOW = {
    Fraction(1, 2): "QOD",
    Fraction(1, 7): "QW",
    Fraction(1, 14): "Q2W",
    Fraction(1, 28): "Q4W",
    Fraction(1, 30): "monthly",
}
_FIELDS = {
    "subject_id": "subject",
    "drug": "medication[x]",
    "start": "effective[x]",
    "stop": "effective[x]",
    "dose": "dosage",
    "dose_unit": "dosage",
    "route": "dosage.route",
    "frequency": "dosage.timing",
    "medication_id": "identifier",
    "source_message_id": "identifier",
}
_CODE = re.compile(CODE_PATTERN)

LocalMedications = Mapping[str, Any]
"""Medications a medicationReference may name within the request: a Bundle entry's by its
``fullUrl`` and ``Medication/<id>``; raw JSON, read only for their code."""


def bundle_medications(entries: Any) -> dict[str, Any]:
    """The Medications of a Bundle's entries by the references that name them; a reference
    two entries answer to names neither."""
    return bundle_resources(entries, "Medication")


_NOT_READ = {
    DOSE_NOT_READ: ("dosage", "no single dose was read (several dosage lines, a dose range, "
                    "a rate only, or no dose): a rule that sums doses raises "
                    "dose-not-convertible for it; send doseQuantity"),
    NO_UNIT: ("dosage", "the dose carries no unit of at most 32 characters: send its UCUM code"),
    ROUTE_NOT_GIVEN: ("dosage.route", "no route was given: a rule that asks for a route "
                      "raises route-not-recognised for it"),
    ROUTE_NOT_READ: ("dosage.route", "the route is not one line of at most 64 characters"),
    TIMING_NOT_READ: ("dosage.timing", "the timing gives no single rate (a range, times or "
                      "events only, or a rate no table names): a rule that sums doses raises "
                      "dose-not-convertible for it"),
}  # fmt: skip


def medication_warnings(event: Any, kind: str) -> list[dict[str, Any]]:
    """Warning issues for what a recorded medication keeps as not read (element and
    problem, never the value), so the sender hears of it with the 201."""
    if not isinstance(event, MedicationRecorded):
        return []
    found = [
        _NOT_READ[v] for v in (event.dose_unit, event.route, event.frequency) if v in _NOT_READ
    ]
    return [
        {
            "severity": "warning",
            "code": "incomplete",
            "diagnostics": f"kept, but {problem}",
            "expression": [f"{kind}.{element}"],
        }
        for element, problem in found
    ]


def _contained_medications(resource: Mapping[str, Any]) -> dict[str, Any]:
    contained = resource.get("contained")
    return {
        f"#{item['id']}": item
        for item in (contained if isinstance(contained, list) else [])
        if isinstance(item, dict)
        and item.get("resourceType") == "Medication"
        and isinstance(item.get("id"), str)
    }


def _text(value: Any, limit: int, marker: str) -> str:
    """``value`` as one line of at most ``limit`` characters, else ``marker`` (the text is
    kept with the receipt, never cut: a cut text may read as another)."""
    if not isinstance(value, str) or not value.strip():
        return marker
    text = value.strip()
    return text if len(text) <= limit and _CODE.match(text) else marker


def _coded(codings: list[dict[str, Any]]) -> str | None:
    """A drug sent only as a code: "<system>|<code>" (RxNorm first, then SNOMED CT, then
    any system), which the rules' drug table reads for the drugs it counts; the code alone
    when the two are past the drug's bound."""
    rank = {RXNORM: 0, SNOMED: 1}
    coded = sorted(
        (c for c in codings if isinstance(c.get("code"), str) and c["code"].strip()),
        key=lambda c: rank.get(str(c.get("system")), 2),
    )
    if not coded:
        return None
    system, code = coded[0].get("system"), coded[0]["code"].strip()
    both = f"{system}|{code}" if isinstance(system, str) and system else code
    return both if len(both) <= 200 else code


def _concept_drug(concept: Any) -> tuple[str | None, str | None]:
    """A CodeableConcept's drug name and ATC code (raw JSON): its text, else a coding's
    display, else its ATC code, else another coding's code (a coded drug is a drug)."""
    if not isinstance(concept, dict):
        return None, None
    codings = [c for c in concept.get("coding") or [] if isinstance(c, dict)]
    atc = next((c["code"] for c in codings if c.get("system") == ATC and c.get("code")), None)
    text = concept.get("text")
    display = next((c["display"] for c in codings if c.get("display")), None)
    name = text if isinstance(text, str) and text.strip() else display or atc or _coded(codings)
    return (name if isinstance(name, str) and name.strip() else None), (str(atc) if atc else None)


def _medication(
    resource: Mapping[str, Any], medications: LocalMedications
) -> dict[str, Any] | None:
    """The contained or bundled Medication a medicationReference names (raw JSON)."""
    reference = resource.get("medicationReference")
    if "medicationCodeableConcept" in resource or not isinstance(reference, dict):
        return None
    text = reference.get("reference")
    local = {**medications, **_contained_medications(resource)}
    target = local.get(local_key(text)) if isinstance(text, str) else None
    return target if isinstance(target, dict) else None


def _drug(
    resource: Mapping[str, Any], medications: LocalMedications
) -> tuple[str | None, str | None]:
    if "medicationCodeableConcept" in resource:
        return _concept_drug(resource["medicationCodeableConcept"])
    reference = resource.get("medicationReference")
    if not isinstance(reference, dict):
        return None, None
    target = _medication(resource, medications)
    name, atc = _concept_drug(target.get("code") if target is not None else None)
    display = reference.get("display")
    if name is None and isinstance(display, str) and display.strip():
        name = display
    return name, atc


def _route(route: Any) -> str:
    """A coding (one of a route code system first) as "code|display", then the text: the
    rules read the code first, the display (its SNOMED CT semantic tag set aside) when
    they do not know the code, then the text; parts past the bound are left off from the
    end. No code, display or text: ROUTE_NOT_GIVEN."""
    if route is None:
        return ROUTE_NOT_GIVEN
    codings = sorted(
        (c for c in route.coding or [] if c.code or c.display),
        key=lambda c: c.system not in _ROUTE_SYSTEMS or not c.code,
    )
    first = codings[0] if codings else None
    parts = [first.code, first.display] if first is not None else []
    parts.append(route.text)
    said = [str(p).strip() for p in parts if p and str(p).strip() and "|" not in str(p)]
    if not said:
        return ROUTE_NOT_GIVEN
    while len(said) > 1 and len("|".join(said)) > 64:
        said.pop()
    return _text("|".join(dict.fromkeys(said)), 64, ROUTE_NOT_READ)


# What a dose or a strength's denominator counts: a volume (in mL) or units of
# presentation. UCUM annotations ({tbl}, {tablet}: how US Core and IPS dosage examples
# write tablets), SNOMED CT units of presentation (732936001 Tablet, 732937005 Capsule),
# HL7 v3 orderableDrugForm (TAB, CAP: the R4 Medication examples' denominators)
_VOLUME = {"ml": Decimal(1), "l": Decimal(1000), "cl": Decimal(10), "dl": Decimal(100)}
_PRESENTATION = {
    **dict.fromkeys(("{tbl}", "{tab}", "{tablet}", "{tablets}", "tbl", "tab", "tabs",
                     "tablet", "tablets", "732936001", "片"), "tablet"),
    **dict.fromkeys(("{cap}", "{capsule}", "{capsules}", "cap", "caps", "capsule",
                     "capsules", "732937005", "粒"), "capsule"),
}  # fmt: skip


def _counted_in(quantity: Any) -> tuple[str, Decimal] | None:
    """What a quantity counts ("mL", "tablet", "capsule") and how many of it one of its
    unit is; None when it is neither a volume nor a unit of presentation."""
    if quantity is None:
        return None
    for said in (quantity.code, quantity.unit):
        key = str(said).strip().lower() if said else ""
        if quantity.system == V3_FORM and key in ("tab", "cap"):
            return _PRESENTATION[key], Decimal(1)
        if key in _VOLUME:
            return "mL", _VOLUME[key]
        if key in _PRESENTATION:
            return _PRESENTATION[key], Decimal(1)
    return None


def _strength(medication: dict[str, Any] | None) -> tuple[Any, Any] | None:
    """The one active ingredient's strength (numerator, denominator) of a Medication, as
    FHIR R4 Medication.ingredient.strength states it; None when there is not exactly one
    (a combination product: which ingredient would the dose be?)."""
    if medication is None:
        return None
    try:
        parsed = Medication.model_validate(medication)
    except ValidationError:
        return None
    ratios = [
        i.strength
        for i in parsed.ingredient or []
        if i.strength is not None and i.isActive is not False
    ]
    if len(ratios) != 1 or ratios[0].numerator is None or ratios[0].denominator is None:
        return None
    return ratios[0].numerator, ratios[0].denominator


def _dose(quantity: Any, strength: tuple[Any, Any] | None = None) -> tuple[Decimal, str]:
    """A dose quantity as (dose, unit); DOSE_NOT_READ when it is not one positive value. A
    volume or a count of tablets of a Medication whose strength is stated (40 mg per 1 mL,
    5 mg per 1 tablet) is the amount of its ingredient: 12.5 mL is 500 mg."""
    if quantity is None or quantity.value is None or quantity.value <= 0:
        return Decimal(1), DOSE_NOT_READ
    converted = _by_strength(quantity, strength) if strength is not None else None
    if converted is not None:
        return converted
    unit = quantity.code if quantity.system == UCUM and quantity.code else quantity.unit
    unit = unit or quantity.code
    return Decimal(quantity.value), _text(unit, 32, NO_UNIT) if unit else NO_UNIT


def _by_strength(quantity: Any, strength: tuple[Any, Any]) -> tuple[Decimal, str] | None:
    numerator, denominator = strength
    given, per = _counted_in(quantity), _counted_in(denominator)
    if given is None or per is None or given[0] != per[0]:
        return None
    if not numerator.value or numerator.value <= 0 or not denominator.value:
        return None
    if denominator.value <= 0:
        return None
    unit = numerator.code if numerator.system == UCUM and numerator.code else numerator.unit
    unit = unit or numerator.code
    if not unit:
        return None
    amount = Decimal(quantity.value) * given[1] / (Decimal(denominator.value) * per[1])
    return amount * Decimal(numerator.value), _text(unit, 32, NO_UNIT)


def _statement_dose(
    statement: MedicationStatement, strength: tuple[Any, Any] | None
) -> tuple[Decimal, str]:
    dosages = statement.dosage or []
    if len(dosages) != 1:
        return Decimal(1), DOSE_NOT_READ  # none, or several lines (a taper): no one dose
    quantities = [d.doseQuantity for d in dosages[0].doseAndRate or [] if d.doseQuantity]
    return _dose(quantities[0] if quantities else None, strength)


def _frequency(timing: Any) -> str | None:
    """A Timing as a frequency the rules read: None (not given) when absent."""
    if timing is None:
        return None
    if timing.code is not None:
        for coding in timing.code.coding or []:
            if coding.code:
                code = str(coding.code).upper()
                return _GTS.get(code, _text(code, 64, TIMING_NOT_READ))
        return _text(timing.code.text, 64, TIMING_NOT_READ)
    repeat = timing.repeat
    listed = _listed_times(repeat) if repeat is not None else None
    if listed is not None:
        return listed
    if repeat is None or repeat.period is None or repeat.periodUnit not in _PER_DAY:
        return TIMING_NOT_READ
    if repeat.frequencyMax is not None or repeat.periodMax is not None or repeat.period <= 0:
        return TIMING_NOT_READ  # a range of rates: none is the one to sum
    times = Fraction(repeat.frequency or 1)
    daily = times * _PER_DAY[repeat.periodUnit] / Fraction(Decimal(repeat.period))
    if daily.denominator == 1 and daily > 0:
        return _text(f"{daily.numerator}/day", 64, TIMING_NOT_READ)
    hours = Fraction(Decimal(repeat.period))
    if times == 1 and repeat.periodUnit == "h" and hours.denominator == 1:
        return _text(f"q{hours.numerator}h", 64, TIMING_NOT_READ)
    return _SLOW.get(daily, TIMING_NOT_READ)


# FHIR R4 event-timing (Timing.repeat.when) codes that each name one moment of the day;
# C, AC and PC (a meal, any meal) do not say how many
_ONE_MOMENT = frozenset(
    ("MORN", "MORN.early", "MORN.late", "NOON", "AFT", "AFT.early", "AFT.late", "EVE",
     "EVE.early", "EVE.late", "NIGHT", "PHS", "HS", "WAKE", "ACM", "ACD", "ACV", "PCM", "PCD",
     "PCV", "CM", "CD", "CV")
)  # fmt: skip


def _listed_times(repeat: Any) -> str | None:
    """Times a day a Timing lists: ``timeOfDay`` ("it is inferred that the action happens
    every day ... on the specified times", FHIR R4) or several ``when`` events ("the
    event is tied to the union of the specified events") with a period of one day. A
    frequency of 1 per day is each time once a day; a frequency that says the same count
    agrees; any other rate, a day-of-week filter or a range is no single rate. None: the
    timing lists no times (its frequency is read)."""
    times = list(dict.fromkeys(repeat.timeOfDay or []))
    events = list(dict.fromkeys(repeat.when or []))
    if times:
        count, needs_day = len(times), False
    elif len(events) > 1:
        if not set(events) <= _ONE_MOMENT:
            return TIMING_NOT_READ  # "at a meal" and breakfast: how many times?
        count, needs_day = len(events), True
    else:
        return None
    if repeat.dayOfWeek or repeat.frequencyMax is not None or repeat.periodMax is not None:
        return TIMING_NOT_READ
    if repeat.period is None:
        unread = needs_day or repeat.frequency not in (None, 1)
        return TIMING_NOT_READ if unread else f"{count}/day"
    if repeat.periodUnit not in _PER_DAY or repeat.period <= 0:
        return TIMING_NOT_READ
    rate = Fraction(repeat.frequency or 1) * _PER_DAY[repeat.periodUnit]
    rate /= Fraction(Decimal(repeat.period))
    return f"{count}/day" if rate in (1, count) else TIMING_NOT_READ


def _end(value: Any, zone: tzinfo) -> datetime | None:
    """The end of a Period as the first moment after it: FHIR R4 Period.end "includes any
    matching date/time" (an end of 2026-03-06 takes in the whole of that day)."""
    first = moment(value, zone)
    if first is None or isinstance(value, datetime):
        return first
    if isinstance(value, date):
        return first + timedelta(days=1)
    if isinstance(value, str) and len(value) == 7:  # YYYY-MM
        return first.replace(year=first.year + first.month // 12, month=first.month % 12 + 1)
    return first.replace(year=first.year + 1)  # YYYY


# UCUM units of time (FHIR R4 units-of-time) as lengths; a month and a year as their
# longest, so that a course is never cut short
_LENGTH = {
    "s": timedelta(seconds=1),
    "min": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "wk": timedelta(weeks=1),
    "mo": timedelta(days=31),
    "a": timedelta(days=366),
}


def _bounds_end(timing: Any, start: datetime, zone: tzinfo) -> datetime | None:
    """When a dosage's Timing.repeat.bounds[x] ends the course: ``boundsPeriod.end``,
    ``boundsDuration`` from the start, or a ``boundsRange``'s longest length; None when
    the timing sets no end."""
    repeat = timing.repeat if timing is not None else None
    if repeat is None:
        return None
    if repeat.boundsPeriod is not None and repeat.boundsPeriod.end is not None:
        return _end(repeat.boundsPeriod.end, zone)
    duration = repeat.boundsDuration
    if duration is None and repeat.boundsRange is not None:
        duration = repeat.boundsRange.high
    if duration is None or duration.value is None or duration.value <= 0:
        return None
    unit = duration.code if duration.code in _LENGTH else None
    if unit is None:
        return None
    try:
        return start + _LENGTH[unit] * float(duration.value)
    except OverflowError:
        return None


def _period(resource: Any, zone: tzinfo) -> tuple[datetime | None, datetime | None]:
    """effective[x] as start and stop; a MedicationStatement without one (0..1 in R4) is
    taken as of its ``dateAsserted``, when the source said it was being taken."""
    if resource.effectiveDateTime is not None:
        return moment(resource.effectiveDateTime, zone), None
    period = resource.effectivePeriod
    if period is not None:
        return moment(period.start, zone), _end(period.end, zone)
    return moment(getattr(resource, "dateAsserted", None), zone), None


def _identity(resource: Any, kind: str, content: tuple[Any, ...]) -> str | None:
    """``identifier[0]`` (system and value) else the logical id; with neither (a
    transaction entry named by a ``urn:uuid`` fullUrl), a digest of the subject, drug and
    start, so that a resend names the same record (a correction needs an identifier)."""
    first = resource.identifier[0] if resource.identifier else None
    if first is not None and first.value:
        return f"{first.system or ''}|{first.value}"
    if resource.id:
        return str(resource.id)
    if any(part is None for part in content):
        return None
    text = "|".join(str(part) for part in (kind, *content))
    return f"sha256:{hashlib.sha256(text.encode()).hexdigest()[:40]}"


def medication_event(
    resource: dict[str, Any],
    *,
    study_id: str,
    zone: tzinfo,
    identifiers: SubjectIdentifierSystem | None = None,
    patients: LocalPatients | None = None,
    medications: LocalMedications | None = None,
) -> tuple[SubjectEvent | None, list[Issue]]:
    """A MedicationRecorded from a MedicationStatement or MedicationAdministration, or the
    issues that prevent it (see the module)."""
    kind = str(resource.get("resourceType"))
    model = MedicationStatement if kind == "MedicationStatement" else MedicationAdministration
    try:
        parsed: Any = model.model_validate(resource)
    except ValidationError as error:
        return None, validation_issues("structure", kind, error)
    issues: list[Issue] = []
    status = str(parsed.status or "")
    taking = status in _TAKING[kind]
    if not taking and status not in _NOT_TAKING[kind]:
        known = sorted(_TAKING[kind] | _NOT_TAKING[kind])
        issues.append(Issue("value", f"{kind}.status", f"status is not one of {', '.join(known)}"))
    system = identifiers or SubjectIdentifierSystem.conventional(study_id)
    referable = {**(patients or {}), **contained_patients(resource)}
    subject = referenced_subject(parsed.subject, kind, system, issues, referable)
    drug, atc = _drug(resource, medications or {})
    if drug is None:
        issues.append(
            Issue(
                "required",
                f"{kind}.medication[x]",
                "the drug is required: medicationCodeableConcept (text or a coding's "
                "display) or medicationReference to a Medication of the request with a code",
            )
        )
    start, end = _period(parsed, zone)
    if start is None:
        issues.append(
            Issue(
                "required",
                f"{kind}.effective[x]",
                "when the medication was taken is required: effectiveDateTime or "
                "effectivePeriod with a start",
            )
        )
    identity = _identity(parsed, kind, (subject, drug, atc or "", start and start.isoformat()))
    if identity is None:
        issues.append(
            Issue(
                "required",
                f"{kind}.identifier",
                "an identifier (or id) is required so that a correction is recognised, "
                "or the subject, drug and time to name the record by",
            )
        )
    if issues or start is None or identity is None or drug is None:
        return None, issues
    strength = _strength(_medication(resource, medications or {}))
    if kind == "MedicationStatement":
        dose, unit = _statement_dose(parsed, strength)
        first = parsed.dosage[0] if parsed.dosage else None
        route = _route(first.route if first else None)
        frequency = _frequency(first.timing if first else None)
        bound = _bounds_end(first.timing if first else None, start, zone)
        stop = min((t for t in (end, bound) if t is not None), default=None)
        if stop is not None and stop < start:
            stop = end  # a bound before the start contradicts it: effective[x] stands
    else:
        dosage = parsed.dosage
        dose, unit = _dose(dosage.dose if dosage else None, strength)
        route = _route(dosage.route if dosage else None)
        frequency = "once"
        stop = max(end, start + timedelta(days=1)) if end else start + timedelta(days=1)
    if not taking:
        stop = start  # a taking of no length: replaces an earlier record, counts never
    try:
        return MedicationRecorded.model_validate(
            {
                "study_id": study_id,
                "subject_id": subject,
                "category": "concomitant",
                "medication_id": bounded(identity, 128),
                "drug": drug.strip(),
                "drug_code": atc,
                "dose": dose,
                "dose_unit": unit,
                "route": route,
                "frequency": frequency,
                "start": start,
                "stop": stop,
                "source_message_id": bounded(f"fhir:{kind}/{identity}", 128),
            }
        ), []
    except ValidationError as error:
        return None, validation_issues("invalid", kind, error, _FIELDS)
