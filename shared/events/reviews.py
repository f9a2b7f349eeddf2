"""What people record about the data in the workspace: a data manager (or the site's
staff) reviewed a data-quality issue. One stream per issue, ``data-quality-{issue_id}``,
whose events carry the subject, so that the subject's audit trail and its export hold
them."""

from __future__ import annotations

import uuid
from typing import ClassVar

from pydantic import AwareDatetime, Field

from shared.events.payloads import SubjectEvent, register_payload


def data_quality_stream(issue_id: uuid.UUID) -> str:
    """The stream of what people did about one data-quality issue."""
    return f"data-quality-{issue_id}"


@register_payload
class DataQualityIssueReviewed(SubjectEvent):
    """A person on the roster reviewed a data-quality issue (the issue raised event
    ``issue_id``), with an optional note; the issue leaves the queue of issues to review."""

    event_type: ClassVar[str] = "org.vigil.data_quality.issue_reviewed.v1"

    issue_id: uuid.UUID = Field(description="The event id of the issue raised.")
    person_id: str = Field(min_length=1, max_length=64)
    role: str = Field(min_length=1, max_length=64)
    reviewed_at: AwareDatetime
    note: str = Field(default="", max_length=1000)

    @property
    def stream_id(self) -> str:
        return data_quality_stream(self.issue_id)
