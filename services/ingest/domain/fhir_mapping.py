"""FHIR R4 resources to Vigil events (pure), and problems as OperationOutcome issues.

Resources are validated with fhir.resources' R4B models: R4B (4.3) changed Observation,
Patient and Bundle in nothing this mapping reads, and the package ships no 4.0.1 models
for pydantic v2.
"""

from __future__ import annotations

import functools
import re
from datetime import date, tzinfo
from decimal import Decimal
from typing import Any, cast

from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from pydantic import ValidationError

from services.ingest.domain.fhir_identity import bounded, content_identity, observation_identity
from services.ingest.domain.fhir_issues import Issue, validation_issues
from services.ingest.domain.fhir_subjects import (
    LocalPatients,
    contained_patients,
    patient_subject,
    referenced_subject,
)
from services.ingest.domain.fhir_times import contradictions, effective
from services.ingest.domain.fhir_values import UCUM, NotRead, value_fields
from services.ingest.domain.subject_identifiers import SubjectIdentifierSystem
from shared.analytes import UnitNotConvertible, analyte_for
from shared.events import (
    LabResultReported,
    LabResultUnreadable,
    ResultStatus,
    Sex,
    SubjectEnrolled,
    SubjectEvent,
)

LOINC = "http://loinc.org"
_STATUS = {
    "final": ResultStatus.FINAL,
    "amended": ResultStatus.CORRECTED,
    "corrected": ResultStatus.CORRECTED,
    "preliminary": ResultStatus.PRELIMINARY,
    "registered": ResultStatus.PRELIMINARY,
    # R4: the source does not know which status applies; judged, and replaced by any
    # later report of the observation, as a preliminary result is
    "unknown": ResultStatus.PRELIMINARY,
    "cancelled": ResultStatus.CANNOT_OBTAIN,
    "entered-in-error": ResultStatus.WRONG,
}
_GENDER = {"female": Sex.FEMALE, "male": Sex.MALE, "other": Sex.OTHER, "unknown": Sex.UNKNOWN}


def _reference_id(reference: Any, kind: str) -> str | None:
    """``Organization/PKUPH-02`` gives ``PKUPH-02``."""
    if reference is None or not reference.reference:
        return None
    text = str(reference.reference)
    return text.split("/", 1)[1] if text.startswith(f"{kind}/") else None


def observation_event(
    resource: dict[str, Any],
    *,
    study_id: str,
    zone: tzinfo,
    identifiers: SubjectIdentifierSystem | None = None,
    patients: LocalPatients | None = None,
) -> tuple[SubjectEvent | None, list[Issue]]:
    """A LabResultReported from an Observation, or the issues that prevent it;
    ``patients`` are the Bundle's Patients its subject may reference."""
    try:
        observation = Observation.model_validate(resource)
    except ValidationError as error:
        return None, validation_issues("structure", "Observation", error)
    issues: list[Issue] = []
    status = _STATUS.get(str(observation.status or ""))
    if status is None:
        issues.append(
            Issue(
                "value",
                "Observation.status",
                f"status is not one of {', '.join(_STATUS)}",
            )
        )
    system = identifiers or SubjectIdentifierSystem.conventional(study_id)
    referable = {**(patients or {}), **contained_patients(resource)}
    subject = referenced_subject(observation.subject, "Observation", system, issues, referable)
    collected, collected_precision = effective(
        observation.effectiveDateTime,
        observation.effectiveInstant,
        observation.effectivePeriod,
        zone,
    )
    if collected is None:
        issues.append(
            Issue(
                "required",
                "Observation.effective[x]",
                "the collection time is required: effectiveDateTime, effectiveInstant or "
                "effectivePeriod with a start or an end",
            )
        )
    issues += [
        Issue("value", element, problem)
        for element, problem in contradictions(
            observation.effectivePeriod, observation.issued, collected, zone
        )
    ]
    codings = list(observation.code.coding or []) if observation.code else []
    loinc = next((c.code for c in codings if c.system == LOINC and c.code), None)
    local = next((c for c in codings if c.system != LOINC and c.code), None)
    identity = observation_identity(observation) or content_identity(
        subject, loinc or (f"{local.system or ''}|{local.code}" if local else None), collected
    )
    read = value_fields(observation, resource)
    if issues or identity is None:
        return None, issues or [
            Issue("required", "Observation.code", "the Observation names no test: code.coding")
        ]
    flags = tuple(
        str(coding.code)
        for concept in observation.interpretation or []
        for coding in concept.coding or []
        if coding.code
    )
    coded = {
        "study_id": study_id,
        "subject_id": subject,
        "loinc_code": loinc,
        "local_code": local.code if local and not loinc else None,
        "local_system": local.system if local and not loinc else None,
        "analyte_text": (observation.code.text if observation.code else None)
        or next((c.display for c in codings if c.display), None),
        "collected_at": collected,
        "result_status": status,
        "abnormal_flags": flags,
        "source_message_id": bounded(identity, 128),
    }
    if isinstance(read, NotRead):
        return _unreadable(coded, read)
    ranges = observation.referenceRange or []
    first_range = ranges[0] if ranges else None
    limit = functools.partial(_limit_in, loinc, read.get("unit"))
    try:
        return LabResultReported.model_validate(
            {
                **coded,
                **read,
                "reference_low": limit(first_range.low if first_range else None),
                "reference_high": limit(first_range.high if first_range else None),
                "collected_precision": collected_precision,
                "observation_key": bounded(identity, 300),
            }
        ), []
    except ValidationError as error:
        return None, validation_issues("invalid", "Observation", error, _OBSERVATION_FIELDS)


def _limit_in(loinc: str | None, value_unit: Any, quantity: Any) -> Decimal | None:
    """A referenceRange limit (a SimpleQuantity with its own unit, FHIR R4) in the unit of
    the value it bounds: a range 0.12-0.67 ukat/L for an ALT in U/L is 7-40 U/L, never a
    ULN of 0.67 U/L. A limit in a unit that cannot be converted to the value's is not
    used (None: the rule pack's fallback applies)."""
    if quantity is None or quantity.value is None:
        return None
    unit = quantity.code if quantity.system == UCUM and quantity.code else quantity.unit
    if not unit or not value_unit or unit == value_unit:
        return cast("Decimal", quantity.value)
    analyte = analyte_for(loinc) if loinc else None
    if analyte is None:
        return None
    try:
        return analyte.to_canonical(quantity.value, unit) / analyte.to_canonical(
            Decimal(1), value_unit
        )
    except UnitNotConvertible:
        return None


def _unreadable(coded: dict[str, Any], read: NotRead) -> tuple[SubjectEvent | None, list[Issue]]:
    """The Observation kept as unreadable, as HL7's OBX is: where, which field, why."""
    try:
        return LabResultUnreadable.model_validate(
            {**coded, "segment": "Observation", "field": "Observation.value[x]",
             "problem": read.problem}
        ), []  # fmt: skip
    except ValidationError as error:
        return None, validation_issues("invalid", "Observation", error, _OBSERVATION_FIELDS)


def patient_event(
    resource: dict[str, Any],
    *,
    study_id: str,
    identifiers: SubjectIdentifierSystem | None = None,
) -> tuple[SubjectEvent | None, list[Issue]]:
    """A SubjectEnrolled from a Patient (the study's identifier, birthDate, gender,
    organisation); names, addresses and telecoms are never read."""
    try:
        patient = Patient.model_validate(resource)
    except ValidationError as error:
        return None, validation_issues("structure", "Patient", error)
    issues: list[Issue] = []
    system = identifiers or SubjectIdentifierSystem.conventional(study_id)
    subject = patient_subject(patient, system, issues)
    if patient.birthDate is None:
        issues.append(Issue("required", "Patient.birthDate", "birthDate is required"))
    site = _reference_id(patient.managingOrganization, "Organization")
    if site is None:
        issues.append(
            Issue(
                "required",
                "Patient.managingOrganization",
                "managingOrganization must reference Organization/<site id>",
            )
        )
    if issues:
        return None, issues
    try:
        return SubjectEnrolled(
            study_id=study_id,
            subject_id=str(subject),
            site_id=str(site),
            sex=_GENDER.get(str(patient.gender or "unknown"), Sex.UNKNOWN),
            birth_date=_birth_date(patient.birthDate),
        ), []
    except ValidationError as error:
        return None, validation_issues("invalid", "Patient", error, _PATIENT_FIELDS)


_PARTIAL_DATE = re.compile(r"^(\d{4})(?:-(\d{2}))?$")


def _birth_date(value: Any) -> Any:
    """FHIR R4 ``date`` at its precision: a birth year ("1985") or month ("1985-04"), as
    de-identified trial feeds send them, stands for its first day, the earliest it can
    mean: the oldest age it allows (Cockcroft-Gault's lower, more alerting clearance) and
    never a result "before birth" that the full date would place after it. Anything else
    is left to the model (which names birthDate when it is wrong)."""
    if isinstance(value, str) and (match := _PARTIAL_DATE.match(value)):
        try:
            return date(int(match[1]), int(match[2] or 1), 1)
        except ValueError:
            return value
    return value


# where an event's field came from in the resource, so that an issue names the element
_PATIENT_FIELDS = {
    "subject_id": "identifier",
    "site_id": "managingOrganization",
    "birth_date": "birthDate",
}
_OBSERVATION_FIELDS = {
    "subject_id": "subject",
    "collected_at": "effective[x]",
    "value": "value[x]",
    "unit": "valueQuantity.code",
    "reference_low": "referenceRange.low",
    "reference_high": "referenceRange.high",
}
