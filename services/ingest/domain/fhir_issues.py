"""FHIR OperationOutcome issues: where a resource is wrong and how, never what it held.

The diagnostics are answered to the sender and also kept as the reason of the rejected
receipt, its dead letter and its audit-log event, so they quote no value: a Patient's
birth date or an MRN must not travel with the rejection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from shared.field_problems import field_problems


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome issue: ``structure`` problems answer 400, the rest 422."""

    code: str  # FHIR issue-type: structure, required, value, not-supported, invalid
    expression: str
    diagnostics: str

    def as_fhir(self) -> dict[str, Any]:
        return {
            "severity": "error",
            "code": self.code,
            "diagnostics": self.diagnostics,
            "expression": [self.expression],
        }


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.as_fhir() for i in issues]}


def validation_issues(
    code: str, kind: str, error: ValidationError, elements: Mapping[str, str] | None = None
) -> list[Issue]:
    """A validation error's problems as issues of ``code``: the path and the problem.

    ``elements`` names the resource's own element for an event field (``collected_at``
    came from ``Observation.effective[x]``), so the sender is told where to look."""
    elements = elements or {}
    return [
        Issue(
            code,
            f"{kind}.{elements.get(problem.field, problem.field)}" if problem.location else kind,
            problem.problem,
        )
        for problem in field_problems(error)
    ]
