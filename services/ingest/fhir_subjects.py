"""The study subject a FHIR resource is about: only ever the study's own subject id.

A Patient lists its identifiers in any order (a hospital lists its MRN first); an
Observation or AdverseEvent names its patient by reference or by identifier. Only
``Patient/<study subject id>`` or an identifier whose system is the study's is taken;
an identifier of any other system is refused with an issue naming the field and the
system expected, never the value sent.
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.patient import Patient

from services.ingest.fhir_issues import Issue
from services.ingest.subject_identifiers import SubjectIdentifierSystem
from shared.events.payloads import SUBJECT_ID_FORM, is_subject_id


def _subject_id_issue(expression: str, value: str) -> Issue | None:
    if is_subject_id(value):
        return None
    return Issue("value", expression, f"the study subject id must be {SUBJECT_ID_FORM}")


def referenced_subject(
    reference: Any, kind: str, system: SubjectIdentifierSystem, issues: list[Issue]
) -> str | None:
    """The study subject a resource is about: ``Patient/<study subject id>``, or an
    identifier in the study's system. An identifier of any other system (a hospital MRN)
    is refused, never taken as the subject id."""
    study = system.fhir_system
    if reference is not None and reference.reference:
        text = str(reference.reference)
        subject = text.removeprefix("Patient/") if text.startswith("Patient/") else None
        if subject is None:
            issues.append(
                Issue(
                    "value",
                    f"{kind}.subject.reference",
                    "must be Patient/<study subject id>",
                )
            )
            return None
        problem = _subject_id_issue(f"{kind}.subject.reference", subject)
        if problem is not None:
            issues.append(problem)
            return None
        return subject
    identifier = reference.identifier if reference is not None else None
    if identifier is not None and identifier.value:
        if identifier.system != study:
            issues.append(
                Issue(
                    "value",
                    f"{kind}.subject.identifier.system",
                    f"the identifier is not from the study's system {study}: name the subject "
                    f"as Patient/<study subject id> or by an identifier with system {study}",
                )
            )
            return None
        problem = _subject_id_issue(f"{kind}.subject.identifier.value", str(identifier.value))
        if problem is not None:
            issues.append(problem)
            return None
        return str(identifier.value)
    issues.append(
        Issue(
            "required",
            f"{kind}.subject",
            f"subject must reference Patient/<study subject id> or an identifier with "
            f"system {study}",
        )
    )
    return None


def patient_subject(
    patient: Patient, system: SubjectIdentifierSystem, issues: list[Issue]
) -> str | None:
    """The value of the Patient's identifier in the study's system; any other identifier
    (the hospital's MRN, listed first or not) is never read."""
    study = system.fhir_system
    values = {
        str(identifier.value)
        for identifier in patient.identifier or []
        if identifier.system == study and identifier.value
    }
    if not values:
        issues.append(
            Issue(
                "required",
                "Patient.identifier",
                f"no identifier with the study's system {study}: the study subject id is "
                "required (other identifiers, such as an MRN, are never used)",
            )
        )
        return None
    if len(values) > 1:
        issues.append(
            Issue(
                "value",
                "Patient.identifier",
                f"{len(values)} different identifiers with the study's system {study}; send one",
            )
        )
        return None
    (subject,) = values
    problem = _subject_id_issue("Patient.identifier.value", subject)
    if problem is not None:
        issues.append(problem)
        return None
    return subject
