"""FHIR R4 over HTTP: Observation, Patient and batch/transaction Bundles at /fhir/r4.

Routes translate and delegate: mapping is in fhir_mapping, durable receipt in Intake.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import tzinfo
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.ingest.adapters.publisher import BrokerUnavailable
from services.ingest.adapters.receipts import Receipt
from services.ingest.domain import events_for
from services.ingest.fhir_issues import Issue, operation_outcome
from services.ingest.fhir_mapping import adverse_event_event, observation_event, patient_event
from services.ingest.intake import Intake, StorageUnavailable
from services.ingest.subject_identifiers import SubjectIdentifiers
from shared.events import Envelope, SubjectEvent

log = structlog.get_logger(__name__)
FHIR_JSON = "application/fhir+json"
SOURCE = "/vigil/ingest/fhir"
CHANNEL = "fhir"


def _response(status: int, body: dict[str, Any], **headers: str) -> JSONResponse:
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON, headers=headers)


def _status_for(issues: list[Issue]) -> int:
    return 400 if any(issue.code == "structure" for issue in issues) else 422


def add_fhir_routes(
    app: FastAPI,
    intake: Callable[[], Intake],
    *,
    default_study: str,
    zone: tzinfo,
    identifiers: SubjectIdentifiers | None = None,
) -> None:
    """Mount the FHIR endpoints on ``app``; ``identifiers`` gives each study's identifier
    system (the only one a subject id is taken from)."""
    system = (identifiers or SubjectIdentifiers()).for_study(default_study)

    def event_of(resource: Any) -> tuple[SubjectEvent | None, list[Issue]]:
        if not isinstance(resource, dict):
            return None, [Issue("structure", "Resource", "the body is not a JSON object")]
        kind = resource.get("resourceType")
        if kind == "Observation":
            return observation_event(
                resource, study_id=default_study, zone=zone, identifiers=system
            )
        if kind == "Patient":
            return patient_event(resource, study_id=default_study, identifiers=system)
        if kind == "AdverseEvent":
            return adverse_event_event(
                resource, study_id=default_study, zone=zone, identifiers=system
            )
        return None, [
            Issue(
                "not-supported",
                "Resource.resourceType",
                "resourceType is not one accepted here (Observation, Patient, AdverseEvent, "
                "Bundle)",
            )
        ]

    async def receive(request: Request) -> tuple[bytes, Any, Receipt]:
        raw = await request.body()
        client = request.client.host if request.client else "unknown"
        receipt = Receipt(
            channel=CHANNEL,
            source=f"{client} {request.method} {request.url.path}",
            content_type=request.headers.get("content-type"),
            raw=raw,
            outcome="accepted",
        )
        try:
            return raw, json.loads(raw), receipt
        except ValueError:
            return raw, None, receipt

    async def reject(receipt: Receipt, issues: list[Issue], path: str) -> JSONResponse:
        reason = "; ".join(f"{i.expression}: {i.diagnostics}" for i in issues)
        rejected = replace(receipt, outcome="rejected", reason=reason)
        with contextlib.suppress(StorageUnavailable):  # the sender learns what is wrong anyway
            await intake().reject(rejected, origin=f"fhir {path}", reason_code=issues[0].code)
        return _response(_status_for(issues), operation_outcome(issues))

    async def accept(receipt: Receipt, events: list[SubjectEvent]) -> list[Envelope] | JSONResponse:
        """Accept the events; returns each one's own envelope, in order (data-quality
        events that come with them are published too, but not returned)."""
        correlation = uuid.uuid4()
        groups = [
            events_for(event, source=SOURCE, correlation_id=correlation, now=None)
            for event in events
        ]
        envelopes = [envelope for group in groups for envelope in group]
        with structlog.contextvars.bound_contextvars(correlation_id=str(correlation)):
            try:
                await intake().accept(receipt, envelopes)
            except (StorageUnavailable, BrokerUnavailable) as error:
                issue = Issue("transient", "Resource", f"{error}; send the request again")
                return _response(503, operation_outcome([issue]))
            log.info("ingest.accepted", channel=CHANNEL, events=len(envelopes))
        return [group[0] for group in groups]

    async def create(request: Request, kind: str) -> JSONResponse:
        _, resource, receipt = await receive(request)
        if isinstance(resource, dict) and resource.get("resourceType") not in (kind, None):
            issues = [Issue("invalid", f"{kind}.resourceType", f"POST to /{kind} takes a {kind}")]
            return await reject(receipt, issues, request.url.path)
        event, issues = (
            event_of(resource)
            if resource is not None
            else (None, [Issue("structure", kind, "the body is not valid JSON")])
        )
        if event is None:
            return await reject(receipt, issues, request.url.path)
        accepted = await accept(receipt, [event])
        if isinstance(accepted, JSONResponse):
            return accepted
        location = f"{kind}/{accepted[0].id}"
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "information",
                    "code": "informational",
                    "diagnostics": f"accepted as event {accepted[0].id}",
                }
            ],
        }
        return _response(201, outcome, Location=location)

    @app.post("/fhir/r4/Observation", status_code=201, tags=["FHIR R4"])
    async def create_observation(request: Request) -> JSONResponse:
        """Report a lab result as a FHIR Observation."""
        return await create(request, "Observation")

    @app.post("/fhir/r4/Patient", status_code=201, tags=["FHIR R4"])
    async def create_patient(request: Request) -> JSONResponse:
        """Register a study subject as a FHIR Patient (no names are kept)."""
        return await create(request, "Patient")

    @app.post("/fhir/r4/AdverseEvent", status_code=201, tags=["FHIR R4"])
    async def create_adverse_event(request: Request) -> JSONResponse:
        """Report an adverse event as a FHIR R4 AdverseEvent."""
        return await create(request, "AdverseEvent")

    @app.post("/fhir/r4", tags=["FHIR R4"])
    async def bundle(request: Request) -> JSONResponse:
        """A batch (each entry on its own) or transaction (all or nothing) Bundle."""
        _, document, receipt = await receive(request)
        if not isinstance(document, dict) or document.get("resourceType") != "Bundle":
            issues = [Issue("structure", "Bundle", "POST /fhir/r4 takes a Bundle")]
            return await reject(receipt, issues, request.url.path)
        kind = document.get("type")
        if kind not in ("batch", "transaction"):
            issues = [Issue("value", "Bundle.type", "type must be batch or transaction")]
            return await reject(receipt, issues, request.url.path)
        entries = document.get("entry") or []
        results = [
            event_of(entry.get("resource") if isinstance(entry, dict) else None)
            for entry in entries
        ]
        failed = {n: issues for n, (_, issues) in enumerate(results) if issues}
        if kind == "transaction" and failed:
            issues = [
                Issue(i.code, f"Bundle.entry[{n}].resource.{i.expression}", i.diagnostics)
                for n, entry_issues in failed.items()
                for i in entry_issues
            ]
            return await reject(receipt, issues, request.url.path)
        events = [event for event, _ in results if event is not None]
        accepted = await accept(receipt, events) if events else []
        if isinstance(accepted, JSONResponse):
            return accepted
        accepted_in_order = iter(accepted)
        response_entries = []
        for n, (_, issues) in enumerate(results):
            if issues:
                response_entries.append(
                    {
                        "response": {
                            "status": "422 Unprocessable Entity",
                            "outcome": operation_outcome(issues),
                        }
                    }
                )
                failed_receipt = replace(
                    receipt,
                    raw=json.dumps(entries[n]).encode(),
                    outcome="rejected",
                    reason="; ".join(i.diagnostics for i in issues),
                )
                with contextlib.suppress(StorageUnavailable):
                    await intake().reject(
                        failed_receipt,
                        origin=f"fhir Bundle.entry[{n}]",
                        reason_code=issues[0].code,
                    )
            else:
                envelope = next(accepted_in_order)
                kind_name = envelope.payload().__class__.__name__
                response_entries.append(
                    {
                        "response": {
                            "status": "201 Created",
                            "location": f"{kind_name}/{envelope.id}",
                        }
                    }
                )
        return _response(
            200,
            {"resourceType": "Bundle", "type": f"{kind}-response", "entry": response_entries},
        )
