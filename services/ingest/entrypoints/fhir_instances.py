"""FHIR interactions beyond create and Bundles (R4 3.1.0): update by PUT, delete and
patch refused with 405, and the CapabilityStatement at ``metadata``.

A PUT to ``[type]/[id]`` is taken as a Bundle entry's PUT is (fhir_entries): it reports
the resource, whose id must be the URL's. Vigil never deletes or patches a report
("if the server refuses to delete resources of that type on principle, then it should
return the status code 405", 3.1.0.7.1): those are answered 405 with ``Allow`` and an
OperationOutcome, and kept like every refused write.

``GET /fhir/r4/metadata`` is served without a key: an interface engine asks it first,
to learn the FHIR version and how to authenticate (3.1.0.14); it is the same for every
caller and names no study, subject or key. Every write still needs a key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.ingest.domain.fhir_entries import NOT_WRITES
from services.ingest.domain.fhir_issues import Issue, operation_outcome
from services.ingest.entrypoints.fhir_http import accept_refusal, capability_statement
from services.ingest.entrypoints.fhir_responses import fhir_response
from services.ingest.entrypoints.http_guard import principal_of

KINDS = (
    "Observation",
    "Patient",
    "AdverseEvent",
    "MedicationStatement",
    "MedicationAdministration",
)
_REFUSED = ("DELETE", "PATCH")


def add_instance_routes(
    app: FastAPI,
    create: Callable[..., Awaitable[JSONResponse]],
    reject: Callable[..., Awaitable[JSONResponse]],
    receive: Callable[[Request], Awaitable[tuple[Any, Any, Any]]],
) -> None:
    """Mount update, the 405s and metadata; ``create``, ``reject`` and ``receive`` are
    fhir_api's."""

    async def not_allowed(request: Request, kind: str, allow: str) -> JSONResponse:
        _, receipt, _ = await receive(request)
        method = request.method
        issue = Issue(
            "not-supported", kind, f"{method} is not supported here: {NOT_WRITES[method]}"
        )
        return await reject(
            receipt,
            [issue],
            request.url.path,
            principal_of(request),
            status=405,
            code="method-not-allowed",
            headers={"Allow": allow},
        )

    for kind in KINDS:
        _add_kind(app, kind, create, not_allowed)

    @app.get("/fhir/r4/metadata", tags=["FHIR R4"])
    async def metadata(request: Request) -> JSONResponse:
        """The server's CapabilityStatement (FHIR R4 4.0.1)."""
        refused = accept_refusal(request.headers.get("accept"))
        if refused is not None:
            return fhir_response(refused.status, operation_outcome([refused.issue]))
        return fhir_response(200, capability_statement(KINDS, app.version))


def _add_kind(
    app: FastAPI,
    kind: str,
    create: Callable[..., Awaitable[JSONResponse]],
    not_allowed: Callable[[Request, str, str], Awaitable[JSONResponse]],
) -> None:
    instance = f"/fhir/r4/{kind}/{{logical_id}}"

    @app.put(instance, status_code=201, tags=["FHIR R4"], name=f"update_{kind}")
    async def update(request: Request, logical_id: str) -> JSONResponse:
        """Report a resource by update (the resource's id is the URL's)."""
        return await create(request, kind, logical_id)

    async def refused_on_instance(request: Request, logical_id: str) -> JSONResponse:
        return await not_allowed(request, kind, "PUT")

    async def refused_on_type(request: Request) -> JSONResponse:
        return await not_allowed(request, kind, "POST")

    app.add_api_route(
        instance, refused_on_instance, methods=list(_REFUSED), include_in_schema=False
    )
    app.add_api_route(
        f"/fhir/r4/{kind}", refused_on_type, methods=list(_REFUSED), include_in_schema=False
    )
