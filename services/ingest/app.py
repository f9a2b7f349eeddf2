"""Ingest's HTTP API: routes translate requests and delegate; no business logic here."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import Body, FastAPI, Header
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import make_asgi_app

from services.ingest.adapters.publisher import BrokerUnavailable, EventPublisher
from services.ingest.domain import to_events
from services.ingest.problems import PROBLEM_JSON, problem, validation_problem
from services.ingest.schemas import Accepted, LabResultsBody, RequestModel, SubjectsBody
from shared.events import Envelope

log = structlog.get_logger(__name__)

_PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}
SOURCE = "/vigil/ingest/http"


def create_app(
    publisher: EventPublisher,
    *,
    default_study: str,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> FastAPI:
    """The ingest application, wired to a publisher."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            await publisher.connect()
        except BrokerUnavailable as error:
            log.warning("ingest.broker_unavailable_at_start", error=str(error))
        yield
        await publisher.close()

    app = FastAPI(
        title="Vigil ingest",
        version="1",
        lifespan=lifespan,
        responses={422: _PROBLEM, 503: _PROBLEM},
    )
    app.add_exception_handler(RequestValidationError, validation_problem)
    app.mount("/metrics", make_asgi_app())

    async def publish(envelopes: list[Envelope], correlation_id: uuid.UUID) -> Response:
        try:
            await publisher.publish(envelopes)
        except BrokerUnavailable as error:
            return problem(
                503,
                "Event broker unavailable",
                f"{error}. Nothing was accepted; send the request again.",
            )
        log.info("ingest.accepted", events=len(envelopes), correlation_id=str(correlation_id))
        accepted = Accepted(
            accepted=len(envelopes),
            event_ids=[str(envelope.id) for envelope in envelopes],
            correlation_id=str(correlation_id),
        )
        return JSONResponse(accepted.model_dump(), status_code=202)

    def correlation(header: str | None) -> uuid.UUID:
        try:
            return uuid.UUID(header) if header else uuid.uuid4()
        except ValueError:
            return uuid.uuid4()

    async def accept(body: RequestModel | list[Any], header: str | None) -> Response:
        correlation_id = correlation(header)
        requests = body if isinstance(body, list) else [body]
        envelopes = to_events(
            requests,
            default_study=default_study,
            source=SOURCE,
            correlation_id=correlation_id,
            now=clock(),
        )
        return await publish(envelopes, correlation_id)

    @app.post("/v1/subjects", status_code=202, response_model=Accepted)
    async def post_subjects(
        body: Annotated[SubjectsBody, Body()],
        x_correlation_id: Annotated[str | None, Header()] = None,
    ) -> Response:
        """Enrol one subject or a list of subjects."""
        return await accept(body, x_correlation_id)

    @app.post("/v1/lab-results", status_code=202, response_model=Accepted)
    async def post_lab_results(
        body: Annotated[LabResultsBody, Body()],
        x_correlation_id: Annotated[str | None, Header()] = None,
    ) -> Response:
        """Report one lab result or a list of them."""
        return await accept(body, x_correlation_id)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Alive."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        """Ready when the broker is reachable."""
        if not await publisher.reachable():
            return problem(503, "Not ready", "the event broker does not answer")
        return JSONResponse({"status": "ready"})

    return app
