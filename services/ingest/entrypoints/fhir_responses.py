"""FHIR requests read and answered: the body as its headers say, OperationOutcome
responses, and the events of what a request reports."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from services.ingest.domain.authorization import Refusal
from services.ingest.domain.fhir_entries import implausible_outcome, unreadable_outcome
from services.ingest.domain.fhir_issues import Issue, operation_outcome
from services.ingest.domain.fhir_medications import medication_warnings
from services.ingest.domain.fhir_refusals import forbidden_issues
from services.ingest.domain.json_events import events_for
from services.ingest.entrypoints.fhir_http import (
    BodyRefused,
    HeaderRefusal,
    accept_refusal,
    content_type_refusal,
    decoded,
)
from services.ingest.entrypoints.http_refusals import FHIR_CHANNEL, refusal
from services.ingest.handlers.ports import Receipt
from shared.events import Envelope, LabResultUnreadable, SubjectEvent
from shared.json_input import decode

FHIR_JSON = "application/fhir+json"
SOURCE = "/vigil/ingest/fhir"


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


def accepted_outcome(
    event_id: uuid.UUID, event: SubjectEvent, kind: str = "Resource"
) -> dict[str, Any]:
    """What a created resource is answered: the event it was accepted as, and a result
    kept unreadable says so."""
    outcome: dict[str, Any] = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "information",
                "code": "informational",
                "diagnostics": f"accepted as event {event_id}",
            }
        ],
    }
    if isinstance(event, LabResultUnreadable):
        outcome["issue"] += unreadable_outcome(event)["issue"]
    elif (implausible := implausible_outcome(event)) is not None:
        outcome["issue"] += implausible["issue"]
    outcome["issue"] += medication_warnings(event, kind)
    return outcome


def forbidden_response(
    refusals: list[Refusal],
    where: dict[uuid.UUID, tuple[str, str]],
    default: tuple[str, str] = ("", "Resource"),
) -> JSONResponse:
    """403 for what the key may not write (problem+json, as every channel's refusal)."""
    issues = forbidden_issues(refusals, where, default)
    return refusal(
        FHIR_CHANNEL,
        403,
        "Forbidden",
        "not this key's to write; nothing was accepted",
        code=refusals[0].code,
        errors=[{"expression": i.expression, "problem": i.diagnostics} for i in issues],
    )


async def read_request(
    request: Request, max_body_bytes: int
) -> tuple[Any, Receipt, HeaderRefusal | None]:
    """The request's resource (None when it is no JSON), its receipt, and why its
    headers refuse it, if they do (fhir_http); the receipt keeps the body decoded."""
    raw = await request.body()
    headers = request.headers
    refused = content_type_refusal(headers.get("content-type")) or accept_refusal(
        headers.get("accept")
    )
    if refused is None:
        try:
            raw = decoded(raw, headers.get("content-encoding"), max_body_bytes)
        except BodyRefused as error:
            refused = error.refusal
    client = request.client.host if request.client else "unknown"
    receipt = Receipt(
        channel=FHIR_CHANNEL,
        source=f"{client} {request.method} {request.url.path}",
        content_type=headers.get("content-type"),
        raw=raw,
        outcome="accepted",
    )
    if refused is not None:
        return None, receipt, refused
    try:
        return decode(raw), receipt, None
    except ValueError:
        return None, receipt, None
