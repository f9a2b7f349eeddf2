"""The study subject a FHIR resource is about: only ever the study's own subject id.

A Patient lists its identifiers in any order (a hospital lists its MRN first); an
Observation or AdverseEvent names its patient by reference or by identifier. The subject
id comes only from an identifier in the study's system (the reference's own, or that of
a Patient the request carries, contained or in the Bundle) or from
``Patient/<study subject id>`` alone; a hospital's reference next to the study's
identifier is never read, and an identifier of any other system is refused with an
issue naming the field and the system expected, never the value sent.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from fhir.resources.R4B.patient import Patient
from pydantic import ValidationError

from services.ingest.domain.fhir_issues import Issue
from services.ingest.domain.subject_identifiers import SubjectIdentifierSystem
from shared.events.payloads import SUBJECT_ID_FORM, is_subject_id

LocalPatients = Mapping[str, Any]
"""Patients a reference may name without leaving the request, by the reference text
that names each (``#id`` for a contained one; a Bundle entry's ``fullUrl`` and
``Patient/<id>``); raw JSON, read only for their identifiers."""


# A literal reference to a Patient as FHIR R4 writes one (references.html, "Literal
# References"): relative or absolute (any service base), optionally version-specific.
# The logical id is read as text: no address in it is ever fetched.
_PATIENT_REFERENCE = re.compile(
    r"(?:https?://(?:[A-Za-z0-9\-\\.:%$]*/)+)?Patient/([^/]+)(?:/_history/[^/]+)?"
)
_VERSION = re.compile(r"/_history/[^/]+$")


def local_key(reference: str) -> str:
    """The text a reference names a Patient of the request by: a version-specific
    reference (``Patient/x/_history/1``) names the same resource as its versionless
    form, the one fullUrls and logical ids are listed under."""
    return _VERSION.sub("", reference)


def _subject_id_issue(expression: str, value: str) -> Issue | None:
    if is_subject_id(value):
        return None
    return Issue("value", expression, f"the study subject id must be {SUBJECT_ID_FORM}")


def contained_patients(resource: Mapping[str, Any]) -> dict[str, Any]:
    """The Patients contained in ``resource``, by their local reference ``#id``. An id
    two contained resources share (of any type; FHIR requires them unique) names
    neither, so ``#id`` is refused rather than filed under whichever came last."""
    contained = resource.get("contained")
    items = [
        item
        for item in (contained if isinstance(contained, list) else [])
        if isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"]
    ]
    shared = {id_ for id_, count in Counter(item["id"] for item in items).items() if count > 1}
    return {
        f"#{item['id']}": item
        for item in items
        if item.get("resourceType") == "Patient" and item["id"] not in shared
    }


def entry_names(entry: dict[str, Any], resource: dict[str, Any]) -> list[str]:
    """The references that name a Bundle entry's resource within the Bundle: its
    ``fullUrl`` (``urn:uuid:...`` or an absolute URL) and ``<resourceType>/<id>``."""
    logical, kind = resource.get("id"), resource.get("resourceType")
    names = [entry.get("fullUrl"), f"{kind}/{logical}" if logical else None]
    return [name for name in names if isinstance(name, str) and name]


def bundle_resources(entries: Any, kind: str) -> dict[str, Any]:
    """The resources of one ``kind`` among a Bundle's entries by the references that name
    them within the Bundle (:func:`entry_names`). A reference two different entries answer
    to names neither."""
    found: dict[str, Any] = {}
    ambiguous: set[str] = set()
    for entry in entries if isinstance(entries, list) else []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") != kind:
            continue
        for name in set(entry_names(entry, resource)):
            if name in found and found[name] is not resource:
                ambiguous.add(name)
            found[name] = resource
    return {name: item for name, item in found.items() if name not in ambiguous}


def bundle_patients(entries: Any) -> dict[str, Any]:
    """The Patients of a Bundle's entries by the references that name them within the
    Bundle: the entry's ``fullUrl`` (``urn:uuid:...`` or an absolute URL) and
    ``Patient/<id>``. A reference two different entries answer to names neither."""
    return bundle_resources(entries, "Patient")


def _identified_subject(
    identifier: Any, kind: str, system: SubjectIdentifierSystem, issues: list[Issue]
) -> str | None:
    """The value of a Reference.identifier in the study's system; any other system (a
    hospital MRN) is refused, never taken as the subject id."""
    study = system.fhir_system
    if identifier.system == study and not identifier.value:
        issues.append(
            Issue("required", f"{kind}.subject.identifier.value", "the identifier has no value")
        )
        return None
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


def _local_subject(
    raw: Any, kind: str, system: SubjectIdentifierSystem, issues: list[Issue]
) -> str | None:
    """The study subject id of a Patient the request itself carries."""
    where = f"{kind}.subject.resolve()"
    try:
        patient = Patient.model_validate(raw)
    except ValidationError:
        issues.append(Issue("invalid", where, "the referenced Patient is not a valid Patient"))
        return None
    return patient_subject(patient, system, issues, where=where)


def referenced_subject(
    reference: Any,
    kind: str,
    system: SubjectIdentifierSystem,
    issues: list[Issue],
    local: LocalPatients | None = None,
) -> str | None:
    """The study subject a resource is about, from the study's identifier system only.

    ``subject.identifier`` in the study's system names the subject. ``subject.reference``
    names it when it resolves within the request to a Patient carrying the study's
    identifier (a contained ``#id``, a Bundle entry's ``fullUrl`` or ``Patient/<id>``);
    otherwise it is read as ``Patient/<study subject id>`` (Vigil's Patients have the
    study subject id as their logical id) unless an identifier is given too, when it is
    the sender's own Patient id (a hospital's, often its MRN) and is never read. An
    identifier of another system, a reference Vigil cannot resolve, or a reference and
    an identifier naming different subjects are refused."""
    local = local or {}
    text = str(reference.reference) if reference is not None and reference.reference else None
    identifier = reference.identifier if reference is not None else None
    named: str | None = None
    if identifier is not None and (identifier.value or identifier.system):
        named = _identified_subject(identifier, kind, system, issues)
        if named is None:
            return None
    if text is not None and local_key(text) in local:
        resolved = _local_subject(local[local_key(text)], kind, system, issues)
        if resolved is not None and named is not None and resolved != named:
            issues.append(
                Issue(
                    "value",
                    f"{kind}.subject",
                    "subject.reference and subject.identifier name different study subjects",
                )
            )
            return None
        return resolved
    if named is not None:
        return named  # the reference, if any, is the sender's own id for the Patient
    if text is None:
        issues.append(
            Issue(
                "required",
                f"{kind}.subject",
                f"subject must reference Patient/<study subject id> or an identifier with "
                f"system {system.fhir_system}",
            )
        )
        return None
    return _logical_subject(text, kind, system, issues)


def _logical_subject(
    text: str, kind: str, system: SubjectIdentifierSystem, issues: list[Issue]
) -> str | None:
    """``Patient/<study subject id>``: the logical id of a Vigil Patient, relative,
    absolute (``https://ehr.example/fhir/Patient/<id>``) or version-specific
    (``Patient/<id>/_history/1``), all naming the same Patient."""
    match = _PATIENT_REFERENCE.fullmatch(text)
    if match is None:
        issues.append(
            Issue(
                "value",
                f"{kind}.subject.reference",
                "must be Patient/<study subject id> (relative, absolute or with /_history/), "
                "a contained Patient or a Patient entry of the Bundle carrying an identifier "
                f"with system {system.fhir_system}, or come with subject.identifier in that "
                "system",
            )
        )
        return None
    subject = match.group(1)
    problem = _subject_id_issue(f"{kind}.subject.reference", subject)
    if problem is not None:
        issues.append(problem)
        return None
    return subject


def patient_subject(
    patient: Patient, system: SubjectIdentifierSystem, issues: list[Issue], where: str = "Patient"
) -> str | None:
    """The value of the Patient's identifier in the study's system; any other identifier
    (the hospital's MRN, listed first or not) is never read. ``where`` is the Patient's
    path in the issues (``Observation.subject.resolve()`` for a referenced one)."""
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
                f"{where}.identifier",
                f"no identifier with the study's system {study}: the study subject id is "
                "required (other identifiers, such as an MRN, are never used)",
            )
        )
        return None
    if len(values) > 1:
        issues.append(
            Issue(
                "value",
                f"{where}.identifier",
                f"{len(values)} different identifiers with the study's system {study}; send one",
            )
        )
        return None
    (subject,) = values
    problem = _subject_id_issue(f"{where}.identifier.value", subject)
    if problem is not None:
        issues.append(problem)
        return None
    return subject
