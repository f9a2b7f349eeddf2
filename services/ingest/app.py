"""Ingest's HTTP API: routes translate requests and delegate; no business logic here."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import structlog
from fastapi import Body, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from services.ingest.adapters.publisher import BrokerUnavailable
from services.ingest.adapters.receipts import Receipt
from services.ingest.domain import to_events
from services.ingest.intake import Intake, StorageUnavailable
from services.ingest.problems import PROBLEM_JSON, field_errors, problem
from services.ingest.schemas import (
    Accepted,
    AdverseEventsBody,
    ConcomitantMedicationsBody,
    LabResultsBody,
    StudyDrugAdministrationsBody,
    SubjectsBody,
)
from shared.http_service import ReadinessCheck, service_app

log = structlog.get_logger(__name__)

_PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}
SOURCE = "/vigil/ingest/http"
CHANNEL = "http-json"


def create_app(
    intake: Callable[[], Intake],
    *,
    default_study: str,
    workers: Callable[[], AbstractAsyncContextManager[None]],
    readiness: ReadinessCheck,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> FastAPI:
    """The ingest application; ``intake`` gives the running Intake once started."""
    app = service_app(
        "Vigil ingest", workers, readiness, version="1", responses={422: _PROBLEM, 503: _PROBLEM}
    )

    async def receipt_of(
        request: Request, outcome: Literal["accepted", "rejected"], reason: str | None = None
    ) -> Receipt:
        client = request.client.host if request.client else "unknown"
        return Receipt(
            channel=CHANNEL,
            source=f"{client} {request.method} {request.url.path}",
            content_type=request.headers.get("content-type"),
            raw=await request.body(),
            outcome=outcome,
            reason=reason,
        )

    async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
        """422 naming each bad field; the message is kept and dead-lettered all the same."""
        assert isinstance(exc, RequestValidationError)
        errors = field_errors(exc.errors(), exc.body)
        fields = sorted({error["field"] for error in errors})
        detail = f"{len(errors)} problem(s) in: {', '.join(fields)}"
        try:
            receipt = await receipt_of(request, "rejected", f"{request.url.path}: {detail}")
            await intake().reject(
                receipt, origin=f"http {request.url.path}", reason_code="invalid-request"
            )
        except StorageUnavailable as error:
            log.error("ingest.rejection_not_recorded", error=str(error), detail=detail)
        return problem(
            422, "Invalid request body", detail, instance=str(request.url.path), errors=errors
        )

    app.add_exception_handler(RequestValidationError, invalid_request)

    def correlation(header: str | None) -> uuid.UUID:
        try:
            return uuid.UUID(header) if header else uuid.uuid4()
        except ValueError:
            return uuid.uuid4()

    async def accept(request: Request, body: BaseModel | list[Any], header: str | None) -> Response:
        correlation_id = correlation(header)
        # every line logged while this message is handled can be followed downstream
        with structlog.contextvars.bound_contextvars(correlation_id=str(correlation_id)):
            return await accept_correlated(request, body, correlation_id)

    async def accept_correlated(
        request: Request, body: BaseModel | list[Any], correlation_id: uuid.UUID
    ) -> Response:
        try:
            envelopes = to_events(
                body if isinstance(body, list) else [body],
                default_study=default_study,
                source=SOURCE,
                correlation_id=correlation_id,
                now=clock(),
            )
        except ValidationError as error:
            # the request model passed but its event did not: still a 422 naming the
            # field, kept and dead-lettered, never a 500 (the models share their types)
            raise RequestValidationError(error.errors(), body=body) from None
        try:
            await intake().accept(await receipt_of(request, "accepted"), envelopes)
        except (StorageUnavailable, BrokerUnavailable) as error:
            return problem(503, "Temporarily unavailable", f"{error}. Send the request again.")
        log.info("ingest.accepted", channel=CHANNEL, events=len(envelopes))
        accepted = Accepted(
            accepted=len(envelopes),
            event_ids=[str(envelope.id) for envelope in envelopes],
            correlation_id=str(correlation_id),
        )
        return JSONResponse(accepted.model_dump(), status_code=202)

    @app.post("/v1/subjects", status_code=202, response_model=Accepted)
    async def post_subjects(
        request: Request,
        body: Annotated[SubjectsBody, Body()],
        x_correlation_id: Annotated[str | None, Header()] = None,
    ) -> Response:
        """Enrol one subject or a list of subjects."""
        return await accept(request, body, x_correlation_id)

    @app.post("/v1/lab-results", status_code=202, response_model=Accepted)
    async def post_lab_results(
        request: Request,
        body: Annotated[LabResultsBody, Body()],
        x_correlation_id: Annotated[str | None, Header()] = None,
    ) -> Response:
        """Report one lab result or a list of them."""
        return await accept(request, body, x_correlation_id)

    @app.post("/v1/adverse-events", status_code=202, response_model=Accepted)
    async def post_adverse_events(
        request: Request,
        body: Annotated[AdverseEventsBody, Body()],
        x_correlation_id: Annotated[str | None, Header()] = None,
    ) -> Response:
        """Report one adverse event (or an update of it) or a list of them."""
        return await accept(request, body, x_correlation_id)

    @app.post("/v1/concomitant-medications", status_code=202, response_model=Accepted)
    async def post_concomitant_medications(
        request: Request,
        body: Annotated[ConcomitantMedicationsBody, Body()],
        x_correlation_id: Annotated[str | None, Header()] = None,
    ) -> Response:
        """Record one concomitant medication or a list of them."""
        return await accept(request, body, x_correlation_id)

    @app.post("/v1/study-drug-administrations", status_code=202, response_model=Accepted)
    async def post_study_drug_administrations(
        request: Request,
        body: Annotated[StudyDrugAdministrationsBody, Body()],
        x_correlation_id: Annotated[str | None, Header()] = None,
    ) -> Response:
        """Record one study-drug administration or a list of them."""
        return await accept(request, body, x_correlation_id)

    return app
