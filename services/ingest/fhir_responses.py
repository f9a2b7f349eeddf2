"""FHIR answers: OperationOutcome responses, and the events of what a request reports."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.responses import JSONResponse

from services.ingest.domain import events_for
from services.ingest.fhir_issues import Issue, operation_outcome
from shared.events import Envelope, SubjectEvent

FHIR_JSON = "application/fhir+json"
SOURCE = "/vigil/ingest/fhir"
# the media types a FHIR JSON body may come as (application/json+fhir: DSTU2 and STU3 senders)
READ_MEDIA_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})


def fhir_response(status: int, body: dict[str, Any], **headers: str) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON, headers=headers)


def unavailable(error: Exception) -> JSONResponse:
    """503: what was sent could not be kept, so it is not answered as refused either (a
    refusal must never be the only trace of a message); the sender sends it again."""
    issue = Issue("transient", "Resource", f"{error}; send the request again")
    return fhir_response(503, operation_outcome([issue]))


def status_for(issues: list[Issue]) -> int:
    return 400 if any(issue.code == "structure" for issue in issues) else 422


def envelope_groups(events: list[SubjectEvent]) -> list[list[Envelope]]:
    """Each event's envelopes (its own, then any data-quality event), one correlation id
    for the request."""
    correlation = uuid.uuid4()
    return [
        events_for(event, source=SOURCE, correlation_id=correlation, now=None) for event in events
    ]


def resource_type(entry: Any) -> str:
    resource = entry.get("resource") if isinstance(entry, dict) else None
    kind = resource.get("resourceType") if isinstance(resource, dict) else None
    return str(kind) if kind else "Resource"
