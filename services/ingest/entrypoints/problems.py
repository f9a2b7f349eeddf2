"""RFC 9457 problem details (application/problem+json) for ingest's HTTP errors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi.responses import JSONResponse

from shared.field_problems import field_problems

PROBLEM_JSON = "application/problem+json"


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    """A problem+json response."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def _branch(location: list[str]) -> str | None:
    """The union branch a one-or-many body reports ("LabResultIn", "list[LabResultIn]")."""
    if location and (location[0][:1].isupper() or "[" in location[0]):
        return location[0]
    return None


def field_errors(errors: Sequence[Any], body: Any = None) -> list[dict[str, Any]]:
    """Pydantic errors as a list naming the field (a JSON pointer into the body) and why,
    never the value sent (see shared.field_problems).

    A body that may be one object or a list fails both union branches; only the errors of
    the branch matching what was sent are reported.
    """
    chosen = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ())]
        if location and location[0] == "body":
            location = location[1:]
        branch = _branch(location)
        if branch is not None:
            if isinstance(body, list) != branch.startswith("list["):
                continue
            location = location[1:]
        chosen.append({**error, "loc": tuple(location)})
    return [
        {
            "field": problem.field,
            "pointer": problem.pointer,
            "problem": problem.problem,
            "type": problem.kind,
        }
        for problem in field_problems(chosen)
    ]
