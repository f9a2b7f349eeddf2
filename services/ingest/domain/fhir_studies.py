"""Which study a FHIR resource is written to (pure): never the order of its identifiers.

A Patient co-enrolled in two trials carries one study identifier per trial, in any
order. The study is chosen among the studies the resource's identifiers name *and* the
sender's credential may write: exactly one is that study (the other trial's identifier
is then never read); several are ambiguous and refused; none leaves the write to be
refused as a study the credential may not write. A resource naming no study by its
identifiers (``Patient/<id>`` references) is in the credential's study, or the default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.ingest.domain.fhir_issues import Issue
from services.ingest.domain.fhir_subjects import LocalPatients, contained_patients, local_key
from services.ingest.domain.subject_identifiers import SubjectIdentifiers


def _identifiers(resource: Mapping[str, Any], patients: LocalPatients) -> list[Any]:
    """A Patient's identifiers; an Observation's or AdverseEvent's subject identifier and
    the identifiers of the Patient its subject references within the request."""
    if resource.get("resourceType") == "Patient":
        found = resource.get("identifier")
        return found if isinstance(found, list) else []
    subject = resource.get("subject")
    if not isinstance(subject, dict):
        return []
    local = {**patients, **contained_patients(resource)}
    referenced = local.get(local_key(str(subject.get("reference"))))
    found = [subject.get("identifier")]
    if isinstance(referenced, dict) and isinstance(referenced.get("identifier"), list):
        found += referenced["identifier"]
    return found


def named_studies(
    resource: Mapping[str, Any], patients: LocalPatients, systems: SubjectIdentifiers
) -> frozenset[str]:
    """Every study whose identifier system one of the resource's subject identifiers is."""
    named = set()
    for identifier in _identifiers(resource, patients):
        system = identifier.get("system") if isinstance(identifier, dict) else None
        if isinstance(system, str) and (study := systems.study_of_fhir_system(system)):
            named.add(study)
    return frozenset(named)


def choose_study(
    kind: str, named: frozenset[str], writable: frozenset[str], fallback: str
) -> str | Issue:
    """The study (or the issue refusing it) of a resource of ``kind`` whose identifiers
    name ``named`` studies, sent with a credential that may write ``writable`` ones;
    ``fallback`` when it names none.

    Several writable studies named at once is refused (``422`` on the identifiers): the
    credential could file the subject under either, and guessing is never silent. None
    writable gives a named study all the same (the lowest, so never the identifiers'
    order), for the write to be refused as forbidden."""
    if not named:
        return fallback
    mine = named & writable
    if len(mine) == 1:
        (study,) = mine
        return study
    if not mine:
        return min(named)
    where = f"{kind}.identifier" if kind == "Patient" else f"{kind}.subject"
    return Issue(
        "value",
        where,
        f"identifiers of {len(mine)} studies this credential may write: which study the "
        "subject is written to is ambiguous; send the resource to one study, with that "
        "study's identifier only",
    )
