"""Turning accepted requests into events: pure, no I/O."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from services.ingest.schemas import LabResultIn, RequestModel, SubjectIn
from shared.events import Envelope, LabResultReported, SubjectEnrolled, SubjectEvent, wrap

# Which event each kind of request becomes.
PAYLOAD_FOR: dict[type[RequestModel], type[SubjectEvent]] = {
    SubjectIn: SubjectEnrolled,
    LabResultIn: LabResultReported,
}


def to_events(
    requests: Sequence[RequestModel],
    *,
    default_study: str,
    source: str,
    correlation_id: uuid.UUID,
    now: datetime,
) -> list[Envelope]:
    """One event per request, values exactly as sent; the study defaults to the source's."""
    return [
        wrap(
            PAYLOAD_FOR[type(request)](
                **request.model_dump(exclude={"study_id"}),
                study_id=request.study_id or default_study,
            ),
            source=source,
            correlation_id=correlation_id,
            time=now,
        )
        for request in requests
    ]
