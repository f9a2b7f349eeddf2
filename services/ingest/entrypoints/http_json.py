"""Ingest's HTTP API: routes translate requests and delegate; no business logic here.

Every write has passed the WriteGuard before it reaches a route (an API key, the rate
limits, the body cap), which leaves the authenticated Principal in the request's state.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Annotated, Any, Literal

import structlog
from fastapi import Body, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, SecretStr, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.ingest.adapters.key_cache import ApiKeyCache
from services.ingest.domain.authorization import Refusal
from services.ingest.domain.json_events import item_events
from services.ingest.domain.json_requests import (
    Accepted,
    DataQualityWarning,
    WriteRoute,
    write_routes,
)
from services.ingest.domain.plausible_times import DEFAULT_CLOCK_SKEW, time_problems
from services.ingest.domain.principals import Principal
from services.ingest.entrypoints.http_guard import Limits, WriteGuard, principal_of
from services.ingest.entrypoints.http_refusals import JSON_CHANNEL, refusal
from services.ingest.entrypoints.problems import PROBLEM_JSON, field_errors, problem
from services.ingest.handlers.intake import Forbidden, Intake
from services.ingest.handlers.ports import BrokerUnavailable, Receipt, StorageUnavailable
from shared.clock import Clock
from shared.events import DataQualityIssueRaised
from shared.http_service import ReadinessCheck, service_app
from shared.supervision import Supervisor

log = structlog.get_logger(__name__)

_PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}
SOURCE = "/vigil/ingest/http"
CHANNEL = JSON_CHANNEL


def refused_items(
    refusals: Sequence[Refusal], groups: Sequence[Sequence[Any]], *, listed: bool
) -> list[dict[str, str]]:
    """Each refusal as the field of the item it concerns (``3.observation_key``)."""
    item_of = {envelope.id: n for n, group in enumerate(groups) for envelope in group}
    errors = []
    for refused in refusals:
        path = [str(item_of.get(refused.event_id, 0))] if listed else []
        path.append(refused.field)
        errors.append(
            {
                "field": ".".join(path),
                "pointer": "/" + "/".join(path),
                "problem": refused.problem,
                "type": refused.code,
            }
        )
    return errors


def create_app(
    intake: Callable[[], Intake],
    *,
    keys: Callable[[], ApiKeyCache],
    limits: Limits,
    default_study: str,
    max_items: int,
    workers: Callable[[], AbstractAsyncContextManager[None]],
    readiness: ReadinessCheck,
    metrics_token: SecretStr | None,
    supervisor: Supervisor | None = None,
    clock: Clock,
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
) -> FastAPI:
    """The ingest application; ``intake`` and ``keys`` give the running parts once
    started."""
    app = service_app(
        "Vigil ingest",
        workers,
        readiness,
        metrics_token=metrics_token,
        supervisor=supervisor,
        version="1",
        responses={
            401: _PROBLEM,
            403: _PROBLEM,
            413: _PROBLEM,
            422: _PROBLEM,
            429: _PROBLEM,
            503: _PROBLEM,
        },
    )
    app.add_middleware(WriteGuard, keys=keys, intake=intake, limits=limits)

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
        """422 naming each bad field (413 for a list over the cap); the message is kept
        and dead-lettered all the same."""
        assert isinstance(exc, RequestValidationError)
        errors = field_errors(exc.errors(), exc.body)
        too_many = [e for e in errors if e["type"] == "too_long" and e["field"] == "(body)"]
        if too_many:
            status, code, title = 413, "too-many-items", "Too many items"
            detail = (
                f"a request may carry at most {max_items} items "
                f"(VIGIL_INGEST_MAX_ITEMS_PER_REQUEST); send the list in parts"
            )
            errors = [{**too_many[0], "problem": f"at most {max_items} items"}]
        else:
            status, code, title = 422, "invalid-request", "Invalid request body"
            fields = sorted({error["field"] for error in errors})
            detail = f"{len(errors)} problem(s) in: {', '.join(fields)}"
        try:
            receipt = await receipt_of(request, "rejected", f"{request.url.path}: {detail}")
            await intake().reject(
                receipt,
                origin=f"http {request.url.path}",
                reason_code=code,
                principal=principal_of(request),
            )
        except StorageUnavailable as error:
            # a refusal is never the only trace of a message: not kept, so not refused
            # either; the sender sends again
            log.error("ingest.rejection_not_recorded", error=str(error), detail=detail)
            return problem(503, "Temporarily unavailable", f"{error}. Send the request again.")
        if status == 413:
            return refusal(CHANNEL, status, title, detail, code=code, errors=errors)
        return problem(status, title, detail, instance=str(request.url.path), errors=errors)

    app.add_exception_handler(RequestValidationError, invalid_request)

    async def refused_write(request: Request, exc: Exception) -> Response:
        """A write the framework refused before any route saw it (a body that cannot be
        decoded at all, an unknown path or method): answered as problem+json and, like
        every refused write, kept and dead-lettered. Reads keep the framework's answer."""
        assert isinstance(exc, StarletteHTTPException)
        principal = getattr(request.state, "principal", None)
        if request.method in ("GET", "HEAD", "OPTIONS") or not isinstance(principal, Principal):
            return JSONResponse(
                {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
            )
        detail = f"{request.url.path}: {exc.detail}"
        try:
            receipt = await receipt_of(request, "rejected", detail)
            await intake().reject(
                receipt,
                origin=f"http {request.url.path}",
                reason_code="invalid-request",
                principal=principal,
            )
        except StorageUnavailable as error:
            # a refusal is never the only trace of a message: not kept, so not refused
            # either; the sender sends again
            log.error("ingest.rejection_not_recorded", error=str(error), detail=detail)
            return problem(503, "Temporarily unavailable", f"{error}. Send the request again.")
        return problem(exc.status_code, "Request refused", detail, instance=str(request.url.path))

    app.add_exception_handler(StarletteHTTPException, refused_write)

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
        now = clock.now()
        try:
            groups = item_events(
                body if isinstance(body, list) else [body],
                default_study=default_study,
                source=SOURCE,
                correlation_id=correlation_id,
                now=now,
            )
        except ValidationError as error:
            # the request model passed but its event did not: still a 422 naming the
            # field, kept and dead-lettered, never a 500 (the models share their types)
            raise RequestValidationError(error.errors(), body=body) from None
        # a time that cannot be right now (collected in the future, born in the future):
        # refused like any invalid field, nothing of the request taken
        impossible = [
            {
                "type": "value_error",
                "loc": ("body", index, found.field)
                if isinstance(body, list)
                else ("body", found.field),
                "msg": f"Value error, {found.problem}",
                "input": None,
            }
            for index, group in enumerate(groups)
            # RFC 3339 with its offset: the API takes no time without one
            for found in time_problems(group[0].payload(), now, clock_skew, offset_sent=True)
        ]
        if impossible:
            raise RequestValidationError(impossible, body=body)
        envelopes = [envelope for group in groups for envelope in group]
        try:
            await intake().accept(
                await receipt_of(request, "accepted"),
                envelopes,
                principal=principal_of(request),
                origin=f"http {request.url.path}",
            )
        except Forbidden as forbidden:
            errors = refused_items(forbidden.refusals, groups, listed=isinstance(body, list))
            return refusal(
                CHANNEL,
                403,
                "Forbidden",
                f"{len(errors)} item field(s) are not this key's to write; nothing was accepted",
                code=forbidden.refusals[0].code,
                errors=errors,
            )
        except (StorageUnavailable, BrokerUnavailable) as error:
            return problem(503, "Temporarily unavailable", f"{error}. Send the request again.")
        log.info("ingest.accepted", channel=CHANNEL, events=len(envelopes))
        accepted = Accepted(
            accepted=len(envelopes),
            event_ids=[str(envelope.id) for envelope in envelopes],
            correlation_id=str(correlation_id),
            warnings=[
                DataQualityWarning(
                    event_id=str(issue.related_event_id), issue=issue.issue, detail=issue.detail
                )
                for envelope in envelopes
                if isinstance(issue := envelope.payload(), DataQualityIssueRaised)
            ],
        )
        return JSONResponse(accepted.model_dump(), status_code=202)

    def add_write_route(route: WriteRoute) -> None:
        async def endpoint(request: Request, body: Any, x_correlation_id: str | None) -> Response:
            return await accept(request, body, x_correlation_id)

        # the body's type carries the configured item cap, so it is set here, not written
        endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                inspect.Parameter(
                    "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request
                ),
                inspect.Parameter(
                    "body",
                    inspect.Parameter.POSITIONAL_OR_KEYWORD,
                    annotation=Annotated[route.body, Body()],
                ),
                inspect.Parameter(
                    "x_correlation_id",
                    inspect.Parameter.POSITIONAL_OR_KEYWORD,
                    default=None,
                    annotation=Annotated[str | None, Header()],
                ),
            ]
        )
        app.add_api_route(
            route.path,
            endpoint,
            methods=["POST"],
            status_code=202,
            response_model=Accepted,
            summary=route.summary,
            description=route.summary,
            name=f"post_{route.path.rsplit('/', 1)[1].replace('-', '_')}",
        )

    for route in write_routes(max_items):
        add_write_route(route)
    return app
