"""Refusals in the sender's own HTTP dialect: problem+json for the JSON API, an
OperationOutcome for FHIR. One place, so 401, 403, 413 and 429 read alike everywhere."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi.responses import JSONResponse

from services.ingest.entrypoints.problems import problem

FHIR_JSON = "application/fhir+json"
FHIR_CHANNEL = "fhir"
JSON_CHANNEL = "http-json"

# FHIR issue-type codes (http://hl7.org/fhir/issue-type) for the codes Vigil refuses with
_FHIR_ISSUE = {
    "missing-credential": "login",
    "no-keys-configured": "login",
    "malformed-credential": "unknown",
    "unknown-key": "unknown",
    "wrong-secret": "unknown",
    "revoked-key": "expired",
    "expired-key": "expired",
    "forbidden-study": "forbidden",
    "forbidden-site": "forbidden",
    "forbidden-object": "forbidden",
    "body-too-large": "too-long",
    "too-many-items": "too-costly",
    "too-many-entries": "too-costly",
    "rate-limited": "throttled",
    "rate-limited-unauthenticated": "throttled",
    "body-timeout": "timeout",
    "unavailable": "transient",
    "unsupported-media-type": "not-supported",
    "unsupported-encoding": "not-supported",
    "invalid-encoding": "structure",
    "not-acceptable": "not-supported",
    "method-not-allowed": "not-supported",
}

# Every code an HTTP write can be refused with at the boundary (for metrics at zero)
REFUSAL_REASONS = tuple(_FHIR_ISSUE)


def channel_of(path: str) -> str:
    """Which HTTP dialect a path speaks."""
    return FHIR_CHANNEL if path == "/fhir" or path.startswith("/fhir/") else JSON_CHANNEL


def refusal(
    channel: str,
    status: int,
    title: str,
    detail: str,
    *,
    code: str,
    headers: Mapping[str, str] | None = None,
    errors: Sequence[Mapping[str, Any]] = (),
) -> JSONResponse:
    """A refusal as the channel speaks it; ``errors`` name fields (JSON pointer and FHIR
    expression), never values."""
    if channel == FHIR_CHANNEL:
        issues = [
            {
                "severity": "error",
                "code": _FHIR_ISSUE.get(code, "processing"),
                "diagnostics": str(error.get("problem", detail)),
                "expression": [str(error.get("expression", error.get("field", "")))],
            }
            for error in errors
        ] or [
            {
                "severity": "error",
                "code": _FHIR_ISSUE.get(code, "processing"),
                "diagnostics": detail,
            }
        ]
        body = {"resourceType": "OperationOutcome", "issue": issues}
        return JSONResponse(
            body, status_code=status, media_type=FHIR_JSON, headers=dict(headers or {})
        )
    extra: dict[str, Any] = {"code": code}
    if errors:
        extra["errors"] = [
            {key: value for key, value in error.items() if key != "expression"} for error in errors
        ]
    response = problem(status, title, detail, **extra)
    response.headers.update(dict(headers or {}))
    return response
