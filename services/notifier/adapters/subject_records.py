"""What the subject page and the eDISH plot read from the audit log, through the event
store: one subject's facts (by the index on study, subject and position), and a study's
liver results, enrolments and Hy's law signals."""

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
from shared.eventstore import LoggedEvent, PayloadMatch, PostgresEventStore

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


def _decoded(event: LoggedEvent) -> EventPayload:
    return payload_class(event.type).model_validate(event.payload)


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
    events = await PostgresEventStore(pool).read_subject_events(study_id, subject_id, SUBJECT_TYPES)
    if not events:
        return None
    return facts_from((e.event_id, _decoded(e)) for e in events), events[-1].position


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
    events = await PostgresEventStore(pool).read_study_events(
        study_id,
        [SubjectEnrolled.event_type, LabResultSuperseded.event_type],
        matching=[
            PayloadMatch((LabResultReported.event_type,), "loinc_code", codes_of(*LIVER_ANALYTES)),
            PayloadMatch(
                (SafetySignalRaised.event_type, SafetySignalRetracted.event_type),
                "rule_id",
                tuple(hys_law_rules),
            ),
        ],
    )
    by_subject: dict[str, list[tuple[uuid.UUID, EventPayload]]] = {}
    signals: dict[str, set[uuid.UUID]] = {}
    for event in events:
        payload = _decoded(event)
        subject = event.subject_id
        assert subject is not None  # the query reads events naming a subject only
        if isinstance(payload, SafetySignalRaised):
            signals.setdefault(subject, set()).add(payload.signal_id)
        elif isinstance(payload, SafetySignalRetracted):
            signals.setdefault(subject, set()).discard(payload.signal_id)
        else:
            by_subject.setdefault(subject, []).append((event.event_id, payload))
    return {
        subject: LiverRecord(facts_from(by_subject.get(subject, [])), signals.get(subject, set()))
        for subject in sorted(set(by_subject) | set(signals))
    }
