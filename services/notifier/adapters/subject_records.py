"""What the subject page and the eDISH plot read from the audit log: one subject's facts,
and a study's liver results, straight from the ``events`` table (the index on study,
subject and position serves both)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import asyncpg

from services.notifier.domain.subject_chart import Recorded, SubjectFacts
from shared.analytes import codes_of
from shared.events import (
    AdverseEventReported,
    EventPayload,
    LabResultReported,
    LabResultSuperseded,
    MedicationRecorded,
    SafetySignalRaised,
    SafetySignalRetracted,
    SubjectEnrolled,
    payload_class,
)

SUBJECT_TYPES = tuple(
    cls.event_type
    for cls in (
        SubjectEnrolled,
        LabResultReported,
        LabResultSuperseded,
        AdverseEventReported,
        MedicationRecorded,
    )
)
LIVER_ANALYTES = ("ALT", "AST", "total bilirubin")

_SUBJECT_SQL = """
SELECT position, event_id, type, payload_json FROM events
WHERE study_id = $1 AND subject_id = $2 AND type = ANY($3::text[])
ORDER BY position
"""
_LIVER_SQL = """
SELECT event_id, subject_id, type, payload_json FROM events
WHERE study_id = $1 AND subject_id IS NOT NULL AND (
    type = ANY($2::text[])
    OR (type = $3 AND payload->>'loinc_code' = ANY($4::text[]))
    OR (type = ANY($5::text[]) AND payload->>'rule_id' = ANY($6::text[]))
)
ORDER BY position
"""


def _decoded(type_: str, text: str) -> EventPayload:
    return payload_class(type_).model_validate_json(text)


def facts_from(rows: Iterable[tuple[uuid.UUID, EventPayload]]) -> SubjectFacts:
    """A subject's facts from its events in log order (the last enrolment stands)."""
    enrolment: SubjectEnrolled | None = None
    results: list[Recorded] = []
    supersessions: list[LabResultSuperseded] = []
    adverse_events: list[AdverseEventReported] = []
    medications: list[MedicationRecorded] = []
    for event_id, payload in rows:
        if isinstance(payload, SubjectEnrolled):
            enrolment = payload
        elif isinstance(payload, LabResultReported):
            results.append(Recorded(event_id, payload))
        elif isinstance(payload, LabResultSuperseded):
            supersessions.append(payload)
        elif isinstance(payload, AdverseEventReported):
            adverse_events.append(payload)
        elif isinstance(payload, MedicationRecorded):
            medications.append(payload)
    return SubjectFacts(
        enrolment,
        tuple(results),
        tuple(supersessions),
        tuple(adverse_events),
        tuple(medications),
    )


async def subject_facts(
    pool: asyncpg.Pool, study_id: str, subject_id: str
) -> tuple[SubjectFacts, int] | None:
    """Everything the subject page draws, and the log position of the last of it (what
    changes whenever the page would); None: the log holds nothing about the subject."""
    rows = await pool.fetch(_SUBJECT_SQL, study_id, subject_id, list(SUBJECT_TYPES))
    if not rows:
        return None
    facts = facts_from(
        (row["event_id"], _decoded(row["type"], row["payload_json"])) for row in rows
    )
    return facts, rows[-1]["position"]


@dataclass
class LiverRecord:
    """One subject's liver results, enrolment and Hy's law signals (open or retracted)."""

    facts: SubjectFacts = field(default_factory=lambda: SubjectFacts(None))
    hys_law_signals: set[uuid.UUID] = field(default_factory=set)


async def liver_records(
    pool: asyncpg.Pool, study_id: str, hys_law_rules: Sequence[str]
) -> dict[str, LiverRecord]:
    """Per subject of the study: ALT, AST and total bilirubin results (every code of each),
    supersessions, enrolment, and the Hy's law signals still standing."""
    rows = await pool.fetch(
        _LIVER_SQL,
        study_id,
        [SubjectEnrolled.event_type, LabResultSuperseded.event_type],
        LabResultReported.event_type,
        list(codes_of(*LIVER_ANALYTES)),
        [SafetySignalRaised.event_type, SafetySignalRetracted.event_type],
        list(hys_law_rules),
    )
    by_subject: dict[str, list[tuple[uuid.UUID, EventPayload]]] = {}
    signals: dict[str, set[uuid.UUID]] = {}
    for row in rows:
        payload = _decoded(row["type"], row["payload_json"])
        subject = row["subject_id"]
        if isinstance(payload, SafetySignalRaised):
            signals.setdefault(subject, set()).add(payload.signal_id)
        elif isinstance(payload, SafetySignalRetracted):
            signals.setdefault(subject, set()).discard(payload.signal_id)
        else:
            by_subject.setdefault(subject, []).append((row["event_id"], payload))
    return {
        subject: LiverRecord(facts_from(by_subject.get(subject, [])), signals.get(subject, set()))
        for subject in sorted(set(by_subject) | set(signals))
    }
