"""Object-level refusals as FHIR speaks them: the FHIRPath of each refused field."""

from __future__ import annotations

import uuid

from services.ingest.domain.authorization import Refusal
from services.ingest.domain.fhir_issues import Issue

# Where each field an ownership rule names lives in a resource (FHIRPath, from the resource).
_FHIR_PATH = {
    "site_id": "managingOrganization",
    "observation_key": "identifier",
    "ae_id": "identifier",
    "medication_id": "identifier",
}


def expression(kind: str, field: str) -> str:
    """The FHIRPath of a refused field in a resource of ``kind``."""
    if field == "subject_id":
        return f"{kind}.identifier" if kind == "Patient" else f"{kind}.subject"
    path = _FHIR_PATH.get(field)
    return f"{kind}.{path}" if path else kind


def forbidden_issues(
    refusals: list[Refusal],
    where: dict[uuid.UUID, tuple[str, str]],
    default: tuple[str, str] = ("", "Resource"),
) -> list[Issue]:
    """OperationOutcome issues for refused events; ``where`` gives each event's path
    prefix (``Bundle.entry[2].resource.``) and resource type."""
    issues = []
    for refused in refusals:
        prefix, kind = where.get(refused.event_id, default)
        issues.append(Issue("forbidden", prefix + expression(kind, refused.field), refused.problem))
    return issues
