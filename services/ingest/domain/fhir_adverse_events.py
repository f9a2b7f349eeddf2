"""FHIR R4 AdverseEvent to a Vigil event (pure)."""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

from fhir.resources.R4B.adverseevent import AdverseEvent
from pydantic import ValidationError

from services.ingest.domain.fhir_issues import Issue, validation_issues
from services.ingest.domain.fhir_subjects import (
    LocalPatients,
    contained_patients,
    referenced_subject,
)
from services.ingest.domain.fhir_times import moment
from services.ingest.domain.subject_identifiers import SubjectIdentifierSystem
from shared.events import AdverseEventReported, SubjectEvent

# where an event's field came from in the resource, so that an issue names the element
_ADVERSE_EVENT_FIELDS = {"subject_id": "subject", "onset": "date", "ae_id": "identifier"}


MEDDRA = "http://terminology.hl7.org/CodeSystem/mdr"
_AE_OUTCOME = {
    "resolved": "recovered",
    "recovering": "recovering",
    "ongoing": "not-recovered",
    "resolvedWithSequelae": "recovered-with-sequelae",
    "fatal": "fatal",
    "unknown": "unknown",
}
_SEVERITY = {"mild": "mild", "moderate": "moderate", "severe": "severe"}


def adverse_event_event(
    resource: dict[str, Any],
    *,
    study_id: str,
    zone: tzinfo,
    identifiers: SubjectIdentifierSystem | None = None,
    patients: LocalPatients | None = None,
) -> tuple[SubjectEvent | None, list[Issue]]:
    """An AdverseEventReported from an R4 AdverseEvent (actuality ``actual`` only: a
    potential event is a near miss, not something that happened to the subject)."""
    try:
        event = AdverseEvent.model_validate(resource)
    except ValidationError as error:
        return None, validation_issues("structure", "AdverseEvent", error)
    issues: list[Issue] = []
    if event.actuality != "actual":
        issues.append(
            Issue(
                "not-supported",
                "AdverseEvent.actuality",
                "only actual events are recorded (actuality: actual)",
            )
        )
    system = identifiers or SubjectIdentifierSystem.conventional(study_id)
    referable = {**(patients or {}), **contained_patients(resource)}
    subject = referenced_subject(event.subject, "AdverseEvent", system, issues, referable)
    codings = list(event.event.coding or []) if event.event else []
    term = (event.event.text if event.event else None) or next(
        (c.display for c in codings if c.display), None
    )
    if not term:
        issues.append(Issue("required", "AdverseEvent.event", "the event's term is required"))
    onset = moment(event.date or event.detected or event.recordedDate, zone)
    if onset is None:
        issues.append(Issue("required", "AdverseEvent.date", "the onset date is required"))
    identity = (event.identifier.value if event.identifier else None) or event.id
    if not identity:
        issues.append(
            Issue(
                "required",
                "AdverseEvent.identifier",
                "an identifier (or id) is required so that updates are recognised",
            )
        )
    if issues:
        return None, issues
    seriousness = [c.code for c in (event.seriousness.coding or [])] if event.seriousness else []
    severity = [c.code for c in (event.severity.coding or [])] if event.severity else []
    outcome = [c.code for c in (event.outcome.coding or [])] if event.outcome else []
    meddra = next((c.code for c in codings if c.system == MEDDRA and c.code), None)
    try:
        return AdverseEventReported.model_validate(
            {
                "study_id": study_id,
                "subject_id": subject,
                "ae_id": str(identity),
                "term": term,
                "meddra_code": meddra,
                "onset": onset,
                "serious": "serious" in seriousness,
                "severity": next((_SEVERITY[s] for s in severity if s in _SEVERITY), None),
                "outcome": next((_AE_OUTCOME[o] for o in outcome if o in _AE_OUTCOME), "unknown"),
                "source_message_id": f"fhir:AdverseEvent/{identity}"[:128],
            }
        ), []
    except ValidationError as error:
        return None, validation_issues("invalid", "AdverseEvent", error, _ADVERSE_EVENT_FIELDS)
