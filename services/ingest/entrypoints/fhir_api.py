"""FHIR R4 over HTTP: Observation, Patient, AdverseEvent, MedicationStatement,
MedicationAdministration and batch/transaction Bundles at /fhir/r4.

Routes translate and delegate: mapping is in fhir_mapping, durable receipt in Intake.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta, tzinfo
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.ingest.domain.authorization import Refusal
from services.ingest.domain.fhir_entries import (
    created,
    location,
    read_entry,
    received_not_used,
)
from services.ingest.domain.fhir_issues import Issue, operation_outcome
from services.ingest.domain.fhir_medications import LocalMedications, bundle_medications
from services.ingest.domain.fhir_reader import ResourceReader
from services.ingest.domain.fhir_refusals import forbidden_issues
from services.ingest.domain.fhir_reports import dated_by_their_reports
from services.ingest.domain.fhir_subjects import LocalPatients, bundle_patients
from services.ingest.domain.fhir_values import unused_observation
from services.ingest.domain.plausible_times import DEFAULT_CLOCK_SKEW, time_problems
from services.ingest.domain.principals import Principal
from services.ingest.domain.subject_identifiers import SubjectIdentifiers
from services.ingest.entrypoints.fhir_http import (
    HeaderRefusal,
)
from services.ingest.entrypoints.fhir_instances import add_instance_routes
from services.ingest.entrypoints.fhir_responses import (
    accepted_outcome,
    envelope_groups,
    fhir_response,
    forbidden_response,
    read_request,
    resource_type,
    status_for,
    unavailable,
)
from services.ingest.entrypoints.http_guard import principal_of
from services.ingest.entrypoints.http_refusals import FHIR_CHANNEL
from services.ingest.handlers.intake import Forbidden, Intake
from services.ingest.handlers.ports import BrokerUnavailable, Receipt, StorageUnavailable
from shared.clock import Clock
from shared.events import Envelope, SubjectEvent

log = structlog.get_logger(__name__)
CHANNEL = FHIR_CHANNEL


# the resource element an event's time came from
_ELEMENT = {
    "collected_at": "Observation.effective[x]",
    "birth_date": "Patient.birthDate",
    "start": "effective[x]",  # a MedicationStatement's or MedicationAdministration's
}


def add_fhir_routes(
    app: FastAPI,
    intake: Callable[[], Intake],
    *,
    default_study: str,
    zone: tzinfo,
    max_bundle_entries: int,
    identifiers: SubjectIdentifiers | None = None,
    max_body_bytes: int = 5 * 1024 * 1024,
    clock: Clock,
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
) -> None:
    """Mount the FHIR endpoints on ``app``; ``identifiers`` gives each study's identifier
    system (the only one a subject id is taken from).

    A FHIR resource names its study by its subject's identifier systems (each study's
    ``fhir_system``): the one of them the key may write, whatever their order (a Patient
    co-enrolled in another trial carries both trials' identifiers); several the key may
    write are refused as ambiguous. One that names none (``Patient/<id>`` references) is
    in the key's study when the key has one, else in ``default_study``. Either way the
    key must allow that study, or the write is refused. ``max_body_bytes`` bounds a
    compressed body once decoded, as the WriteGuard bounds it as sent."""
    reader = ResourceReader(identifiers or SubjectIdentifiers(), zone, default_study)

    def event_of(
        resource: Any,
        principal: Principal,
        patients: LocalPatients | None = None,
        medications: LocalMedications | None = None,
    ) -> tuple[SubjectEvent | None, list[Issue]]:
        """The resource's event, unless a time in it cannot be right now (collected or
        born in the future): then the element that says so, as an issue."""
        event, issues = reader.event_of(resource, principal, patients, medications)
        if event is None:
            return event, issues
        impossible = [
            Issue("value", _ELEMENT.get(found.field, "Resource"), found.problem)
            for found in time_problems(event, clock.now(), clock_skew)
        ]
        return (None, impossible) if impossible else (event, issues)

    async def receive(request: Request) -> tuple[Any, Receipt, HeaderRefusal | None]:
        return await read_request(request, max_body_bytes)

    async def reject(
        receipt: Receipt,
        issues: list[Issue],
        path: str,
        principal: Principal,
        *,
        status: int | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> JSONResponse:
        reason = "; ".join(f"{i.expression}: {i.diagnostics}" for i in issues)
        rejected = replace(receipt, outcome="rejected", reason=reason)
        try:
            await intake().reject(
                rejected,
                origin=f"fhir {path}",
                reason_code=code or issues[0].code,
                principal=principal,
            )
        except StorageUnavailable as error:
            return unavailable(error)
        return fhir_response(
            status or status_for(issues), operation_outcome(issues), **(headers or {})
        )

    async def refuse(receipt: Receipt, refused: HeaderRefusal, request: Request) -> JSONResponse:
        return await reject(
            receipt,
            [refused.issue],
            request.url.path,
            principal_of(request),
            status=refused.status,
            code=refused.code,
            headers=refused.headers,
        )

    async def accept(
        receipt: Receipt, groups: list[list[Envelope]], principal: Principal, *, partial: bool
    ) -> list[Refusal] | JSONResponse:
        """Accept each event's envelopes (its own first, then the data-quality events that
        come with it); returns what was refused (a batch only; otherwise Forbidden is
        raised)."""
        envelopes = [envelope for group in groups for envelope in group]
        correlation = envelopes[0].correlation_id if envelopes else uuid.uuid4()
        with structlog.contextvars.bound_contextvars(correlation_id=str(correlation)):
            try:
                refused = await intake().accept(
                    receipt,
                    envelopes,
                    principal=principal,
                    partial=partial,
                    origin=f"fhir {receipt.source.rsplit(' ', 1)[-1]}",
                )
            except (StorageUnavailable, BrokerUnavailable) as error:
                issue = Issue("transient", "Resource", f"{error}; send the request again")
                return fhir_response(503, operation_outcome([issue]))
            log.info("ingest.accepted", channel=CHANNEL, events=len(envelopes) - len(refused))
        return refused

    async def create(request: Request, kind: str, logical_id: str | None = None) -> JSONResponse:
        """A create (POST to the type) or an update (PUT to ``logical_id``): both report
        the resource; the Observation's status, not the method, says it corrects one."""
        principal = principal_of(request)
        resource, receipt, by_headers = await receive(request)
        if by_headers is not None:
            return await refuse(receipt, by_headers, request)
        if isinstance(resource, dict) and resource.get("resourceType") not in (kind, None):
            issues = [Issue("invalid", f"{kind}.resourceType", f"/{kind} takes a {kind}")]
            return await reject(receipt, issues, request.url.path, principal)
        if (
            isinstance(resource, dict)
            and logical_id is not None
            and resource.get("id") != logical_id
        ):
            # R4 3.1.0.4.2: an update whose resource has no id, or another one, is a 400
            problem = "a PUT's resource must carry the id its URL names"
            issues = [Issue("invalid", f"{kind}.id", problem)]
            return await reject(receipt, issues, request.url.path, principal, status=400)
        if (unused := unused_observation(resource)) is not None:  # kept, nothing to judge
            kept = await accept(receipt, [], principal, partial=False)
            if isinstance(kept, JSONResponse):
                return kept
            answer = received_not_used(unused)["response"]
            return fhir_response(200, answer["outcome"])
        event, issues = (
            event_of(resource, principal)
            if resource is not None
            else (None, [Issue("structure", kind, "the body is not valid JSON")])
        )
        if event is None:
            return await reject(receipt, issues, request.url.path, principal)
        (group,) = envelope_groups([event])
        try:
            accepted = await accept(receipt, [group], principal, partial=False)
        except Forbidden as forbidden:
            return forbidden_response(forbidden.refusals, {}, ("", kind))
        if isinstance(accepted, JSONResponse):
            return accepted
        envelope = group[0]
        outcome = accepted_outcome(envelope.id, event, kind)
        return fhir_response(201, outcome, Location=location(kind, envelope.id))

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

    @app.post("/fhir/r4/MedicationStatement", status_code=201, tags=["FHIR R4"])
    async def create_medication_statement(request: Request) -> JSONResponse:
        """Report a medication taken (a concomitant medication) as a MedicationStatement."""
        return await create(request, "MedicationStatement")

    @app.post("/fhir/r4/MedicationAdministration", status_code=201, tags=["FHIR R4"])
    async def create_medication_administration(request: Request) -> JSONResponse:
        """Report one dose given as a MedicationAdministration."""
        return await create(request, "MedicationAdministration")

    add_instance_routes(app, create, reject, receive)

    @app.post("/fhir/r4", tags=["FHIR R4"])
    async def bundle(request: Request) -> JSONResponse:
        """A batch (each entry on its own) or transaction (all or nothing) Bundle."""
        principal = principal_of(request)
        path = request.url.path
        document, receipt, by_headers = await receive(request)
        if by_headers is not None:
            return await refuse(receipt, by_headers, request)
        if not isinstance(document, dict) or document.get("resourceType") != "Bundle":
            issues = [Issue("structure", "Bundle", "POST /fhir/r4 takes a Bundle")]
            return await reject(receipt, issues, path, principal)
        kind = document.get("type")
        if kind not in ("batch", "transaction"):
            issues = [Issue("value", "Bundle.type", "type must be batch or transaction")]
            return await reject(receipt, issues, path, principal)
        entries = document.get("entry") or []
        if not isinstance(entries, list):
            issues = [Issue("structure", "Bundle.entry", "entry must be a list")]
            return await reject(receipt, issues, path, principal)
        if len(entries) > max_bundle_entries:
            issue = Issue(
                "too-costly",
                "Bundle.entry",
                f"a Bundle may carry at most {max_bundle_entries} entries "
                "(VIGIL_INGEST_MAX_BUNDLE_ENTRIES); send it in parts",
            )
            return await reject(
                receipt, [issue], path, principal, status=413, code="too-many-entries"
            )
        patients, medications = bundle_patients(entries), bundle_medications(entries)
        results = [
            read_entry(
                entry, n, lambda resource: event_of(resource, principal, patients, medications)
            )
            for n, entry in enumerate(dated_by_their_reports(entries))
        ]
        failed = [r.refusal for r in results if r.refusal is not None]
        if kind == "transaction" and failed:
            issues = [issue for refusal in failed for issue in refusal.issues]
            return await reject(receipt, issues, path, principal)
        good = [n for n, result in enumerate(results) if result.event is not None]
        groups = envelope_groups([r.event for r in results if r.event is not None])
        envelope_of = {n: group[0] for n, group in zip(good, groups, strict=True)}
        where = {
            envelope.id: (f"Bundle.entry[{n}].resource.", resource_type(entries[n]))
            for n, envelope in envelope_of.items()
        }
        try:
            # a Bundle with nothing to accept is kept all the same: it was received
            refused = await accept(receipt, groups, principal, partial=kind == "batch")
        except Forbidden as forbidden:  # a transaction: all or nothing
            return forbidden_response(forbidden.refusals, where)
        if isinstance(refused, JSONResponse):
            return refused
        refusals = {r.event_id: r for r in refused}
        response_entries: list[dict[str, Any]] = []
        for n, result in enumerate(results):
            envelope = envelope_of.get(n)
            code: str
            if envelope is not None and envelope.id in refusals:
                issues = forbidden_issues([refusals[envelope.id]], where)
                status, code = "403 Forbidden", refusals[envelope.id].code
            elif result.refusal is not None:
                issues = result.refusal.issues
                status, code = result.refusal.status, issues[0].code
            elif result.unused is not None:
                response_entries.append(received_not_used(result.unused))
                continue
            else:
                assert envelope is not None
                response_entries.append(
                    created(resource_type(entries[n]), envelope.id, result.event)
                )
                continue
            response_entries.append(
                {"response": {"status": status, "outcome": operation_outcome(issues)}}
            )
            failed_receipt = replace(
                receipt,
                raw=json.dumps(entries[n]).encode(),
                outcome="rejected",
                reason="; ".join(f"{i.expression}: {i.diagnostics}" for i in issues),
            )
            try:
                await intake().reject(
                    failed_receipt,
                    origin=f"fhir Bundle.entry[{n}]",
                    reason_code=code,
                    principal=principal,
                )
            except StorageUnavailable as error:
                # the allowed entries are stored; a resend gives them the same answer
                # and keeps this one
                return unavailable(error)
        return fhir_response(
            200,
            {"resourceType": "Bundle", "type": f"{kind}-response", "entry": response_entries},
        )
