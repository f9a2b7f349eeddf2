"""Turning accepted requests into events: pure, no I/O."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from services.ingest.schemas import LabResultIn, SubjectIn
from shared.events import Envelope, LabResultReported, SubjectEnrolled, wrap


def subject_events(
    requests: Sequence[SubjectIn],
    *,
    default_study: str,
    source: str,
    correlation_id: uuid.UUID,
    now: datetime,
) -> list[Envelope]:
    """One SubjectEnrolled per request."""
    return [
        wrap(
            SubjectEnrolled(
                **request.model_dump(exclude={"study_id"}),
                study_id=request.study_id or default_study,
            ),
            source=source,
            correlation_id=correlation_id,
            time=now,
        )
        for request in requests
    ]


def lab_result_events(
    requests: Sequence[LabResultIn],
    *,
    default_study: str,
    source: str,
    correlation_id: uuid.UUID,
    now: datetime,
) -> list[Envelope]:
    """One LabResultReported per request, the value and unit exactly as reported."""
    return [
        wrap(
            LabResultReported(
                **request.model_dump(exclude={"study_id"}),
                study_id=request.study_id or default_study,
            ),
            source=source,
            correlation_id=correlation_id,
            time=now,
        )
        for request in requests
    ]
