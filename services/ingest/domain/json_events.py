"""Turning accepted requests and messages into events: pure, no I/O."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel

from services.ingest.domain.json_requests import (
    AdverseEventIn,
    ConcomitantMedicationIn,
    LabResultIn,
    StudyDrugAdministrationIn,
    SubjectIn,
)
from shared.analytes import normalise_lab_result
from shared.events import (
    AdverseEventReported,
    DataQualityIssueRaised,
    Envelope,
    LabResultReported,
    MedicationRecorded,
    SubjectEnrolled,
    SubjectEvent,
    wrap,
)
from shared.events.payloads import DataQualityProblem, abnormal
from shared.plausibility import implausible_value
from shared.qualitative import qualitative_answer

# Which event each kind of request becomes.
PAYLOAD_FOR: dict[type[BaseModel], type[SubjectEvent]] = {
    SubjectIn: SubjectEnrolled,
    LabResultIn: LabResultReported,
    AdverseEventIn: AdverseEventReported,
    ConcomitantMedicationIn: MedicationRecorded,
    StudyDrugAdministrationIn: MedicationRecorded,
}


def events_for(
    payload: SubjectEvent, *, source: str, correlation_id: uuid.UUID, now: datetime | None
) -> list[Envelope]:
    """A fact's event, normalised, plus a data-quality event when a data manager must look.

    A lab result gets its canonical value and unit (the reported ones are kept), its
    qualitative answer when its text is one of the spellings labs use, or the mark
    ``unmapped`` when Vigil does not know the analyte; a known analyte in a unit that cannot
    be converted is kept as it is and raises a data-quality issue, and so does a value that
    cannot be physiological (``implausible-value``, see :mod:`shared.plausibility`).
    """
    if not isinstance(payload, LabResultReported):
        return [wrap(payload, source=source, correlation_id=correlation_id, time=now)]
    if payload.qualitative is None and payload.value_text is not None:
        answer = qualitative_answer(payload.value_text)
        if answer is not None:
            payload = payload.model_copy(update={"qualitative": answer})
    payload, problem = normalise_lab_result(payload)
    kind = _issue_kind(payload)
    if problem is None and (problem := implausible_value(payload)) is not None:
        kind = "implausible-value"  # kept, never judged: the rules set it aside too
    result = wrap(payload, source=source, correlation_id=correlation_id, time=now)
    if problem is None:
        return [result]
    issue = DataQualityIssueRaised(
        study_id=payload.study_id,
        subject_id=payload.subject_id,
        issue=kind,
        detail=problem,
        related_event_id=result.id,
    )
    return [
        result,
        wrap(issue, source=source, correlation_id=correlation_id, causation_id=result.id, time=now),
    ]


def _issue_kind(result: LabResultReported) -> DataQualityProblem:
    """A value the rules cannot read is an unreadable result (the medical monitor is told,
    and alerted when the lab flagged it abnormal); a number in a unit Vigil cannot
    convert is a unit problem."""
    if result.value is None:
        return (
            "abnormal-result-unreadable" if abnormal(result.abnormal_flags) else "result-unreadable"
        )
    return "unit-not-convertible"


def item_events(
    requests: Sequence[BaseModel],
    *,
    default_study: str,
    source: str,
    correlation_id: uuid.UUID,
    now: datetime,
) -> list[list[Envelope]]:
    """The events of each of a request's items, values exactly as sent plus their normal
    form; the study defaults to the source's."""
    groups: list[list[Envelope]] = []
    for request in requests:
        study_id = getattr(request, "study_id", None) or default_study
        payload = PAYLOAD_FOR[type(request)](
            **request.model_dump(exclude={"study_id"}), study_id=study_id
        )
        groups.append(events_for(payload, source=source, correlation_id=correlation_id, now=now))
    return groups
