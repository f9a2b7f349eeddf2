"""FHIR R4 MedicationStatement and MedicationAdministration to MedicationRecorded (pure).

What is read (FHIR R4 4.0.1; validated with fhir.resources' R4B models, which changed
nothing read here):

- **subject**: the Patient reference, resolved as an Observation's is (fhir_subjects).
- **drug**: ``medicationCodeableConcept`` (its ``text``, else the display of a coding, else
  its ATC code), or ``medicationReference`` to a contained (``#id``) or bundled Medication
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
  recorded with the unit ``(no unit)`` for the same reason.
- **route**: a coding's display (``Intravenous route``), else a SNOMED CT code (the
  route concepts, such as ``47625008`` intravenous, are in the rules' route table), else
  the route's text, else any code; none: ``(route not given)``, which a rule that asks for
  a route raises as ``route-not-recognised``. The display comes first because senders
  code routes with SNOMED CT qualifier values too (the R4 MedicationAdministration
  example's ``255560000`` "Intravenous"), which are no route concept but whose display
  the table reads.
- **frequency** (MedicationStatement): ``dosage[0].timing.code`` (HL7 GTSAbbreviation:
  BID, TID, QID, QD, QOD, AM, PM, BED, WK, MO, Q<n>H; or its text) or ``timing.repeat``
  (``frequency`` per ``period`` ``periodUnit``: 2 per 1 d is ``2/day``, 1 per 8 h ``q8h``,
  1 per 1 wk ``QW``). No timing is no frequency (as the JSON API's absent one: not taken
  as once a day, so a summing rule raises ``dose-not-convertible``); a timing that says
  no single rate (a range, events only, a rate no table names) is ``(timing not read)``,
  so a summing rule raises ``dose-not-convertible``.
  A MedicationAdministration is one dose: frequency ``once``, counted for 24 hours from
  its start (or to the end of its ``effectivePeriod`` when later), so two doses on one day
  are summed and a single dose does not stand for ever.
- **start/stop**: ``effectivePeriod`` start and end, or ``effectiveDateTime``; a
  MedicationStatement without effective[x] (0..1 in R4) is taken as of ``dateAsserted``.
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
from datetime import datetime, timedelta, tzinfo
from decimal import Decimal
from fractions import Fraction
from typing import Any

from fhir.resources.R4B.medicationadministration import MedicationAdministration
from fhir.resources.R4B.medicationstatement import MedicationStatement
from pydantic import ValidationError

from services.ingest.fhir_identity import bounded
from services.ingest.fhir_issues import Issue, validation_issues
from services.ingest.fhir_subjects import (
    LocalPatients,
    contained_patients,
    entry_names,
    local_key,
    referenced_subject,
)
from services.ingest.fhir_times import moment
from services.ingest.subject_identifiers import SubjectIdentifierSystem
from shared.events import MedicationRecorded, SubjectEvent
from shared.events.values import CODE_PATTERN

ATC = "http://www.whocc.no/atc"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
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
    found: dict[str, Any] = {}
    ambiguous: set[str] = set()
    for entry in entries if isinstance(entries, list) else []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") != "Medication":
            continue
        for name in set(entry_names(entry, resource)):
            if name in found and found[name] is not resource:
                ambiguous.add(name)
            found[name] = resource
    return {name: item for name, item in found.items() if name not in ambiguous}


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


def _concept_drug(concept: Any) -> tuple[str | None, str | None]:
    """A CodeableConcept's drug name and ATC code (raw JSON)."""
    if not isinstance(concept, dict):
        return None, None
    codings = [c for c in concept.get("coding") or [] if isinstance(c, dict)]
    atc = next((c["code"] for c in codings if c.get("system") == ATC and c.get("code")), None)
    text = concept.get("text")
    display = next((c["display"] for c in codings if c.get("display")), None)
    name = text if isinstance(text, str) and text.strip() else display or atc
    return (name if isinstance(name, str) and name.strip() else None), (str(atc) if atc else None)


def _drug(
    resource: Mapping[str, Any], medications: LocalMedications
) -> tuple[str | None, str | None]:
    if "medicationCodeableConcept" in resource:
        return _concept_drug(resource["medicationCodeableConcept"])
    reference = resource.get("medicationReference")
    if not isinstance(reference, dict):
        return None, None
    text = reference.get("reference")
    local = {**medications, **_contained_medications(resource)}
    target = local.get(local_key(text)) if isinstance(text, str) else None
    name, atc = _concept_drug(target.get("code") if isinstance(target, dict) else None)
    display = reference.get("display")
    if name is None and isinstance(display, str) and display.strip():
        name = display
    return name, atc


def _route(route: Any) -> str:
    """A coding's display, else a SNOMED CT code, else the text, else any code."""
    if route is None:
        return ROUTE_NOT_GIVEN
    codings = list(route.coding or [])
    said = next((c.display for c in codings if c.display), None)
    said = said or next((c.code for c in codings if c.system == SNOMED and c.code), None)
    said = said or route.text or next((c.code for c in codings if c.code), None)
    return _text(said, 64, ROUTE_NOT_READ) if said else ROUTE_NOT_GIVEN


def _dose(quantity: Any) -> tuple[Decimal, str]:
    """A dose quantity as (dose, unit); DOSE_NOT_READ when it is not one positive value."""
    if quantity is None or quantity.value is None or quantity.value <= 0:
        return Decimal(1), DOSE_NOT_READ
    unit = quantity.code if quantity.system == UCUM and quantity.code else quantity.unit
    unit = unit or quantity.code
    return Decimal(quantity.value), _text(unit, 32, NO_UNIT) if unit else NO_UNIT


def _statement_dose(statement: MedicationStatement) -> tuple[Decimal, str]:
    dosages = statement.dosage or []
    if len(dosages) != 1:
        return Decimal(1), DOSE_NOT_READ  # none, or several lines (a taper): no one dose
    quantities = [d.doseQuantity for d in dosages[0].doseAndRate or [] if d.doseQuantity]
    return _dose(quantities[0] if quantities else None)


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


def _period(resource: Any, zone: tzinfo) -> tuple[datetime | None, datetime | None]:
    """effective[x] as start and stop; a MedicationStatement without one (0..1 in R4) is
    taken as of its ``dateAsserted``, when the source said it was being taken."""
    if resource.effectiveDateTime is not None:
        return moment(resource.effectiveDateTime, zone), None
    period = resource.effectivePeriod
    if period is not None:
        return moment(period.start, zone), moment(period.end, zone)
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
    if kind == "MedicationStatement":
        dose, unit = _statement_dose(parsed)
        first = parsed.dosage[0] if parsed.dosage else None
        route = _route(first.route if first else None)
        frequency = _frequency(first.timing if first else None)
        stop = end
    else:
        dosage = parsed.dosage
        dose, unit = _dose(dosage.dose if dosage else None)
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
