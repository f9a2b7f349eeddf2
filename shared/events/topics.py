"""Kafka topic names: one topic per kind of fact."""

from __future__ import annotations

from shared.events.payloads import (
    AdverseEventReported,
    DataQualityIssueRaised,
    EventPayload,
    InputRejected,
    InputRejectedV1,
    LabResultReported,
    LabResultUnreadable,
    MedicationRecorded,
    SignalEvent,
    SubjectEnrolled,
)

SUBJECTS = "vigil.subjects.v1"
LAB_RESULTS = "vigil.lab-results.v1"
SAFETY_SIGNALS = "vigil.safety-signals.v1"
DEAD_LETTERS = "vigil.dead-letters.v1"
DATA_QUALITY = "vigil.data-quality.v1"
ADVERSE_EVENTS = "vigil.adverse-events.v1"
MEDICATIONS = "vigil.medications.v1"

ALL_TOPICS = (
    SUBJECTS,
    LAB_RESULTS,
    ADVERSE_EVENTS,
    MEDICATIONS,
    SAFETY_SIGNALS,
    DEAD_LETTERS,
    DATA_QUALITY,
)

_TOPIC_OF: dict[type[EventPayload], str] = {
    SubjectEnrolled: SUBJECTS,
    LabResultReported: LAB_RESULTS,
    LabResultUnreadable: LAB_RESULTS,
    InputRejected: DEAD_LETTERS,
    InputRejectedV1: DEAD_LETTERS,
    DataQualityIssueRaised: DATA_QUALITY,
    AdverseEventReported: ADVERSE_EVENTS,
    MedicationRecorded: MEDICATIONS,
}


def topic_for(payload_type: type[EventPayload]) -> str:
    """The topic that carries events of this payload type; every event in a signal's life
    travels on the safety-signals topic, in the subject's order."""
    if issubclass(payload_type, SignalEvent):
        return SAFETY_SIGNALS
    return _TOPIC_OF[payload_type]


def travels_on(payload_type: type[EventPayload], topic: str) -> bool:
    """Whether events of this payload type belong on ``topic``: a consumer refuses any
    other type found there (a type kept in the audit log only belongs on no topic)."""
    try:
        return topic_for(payload_type) == topic
    except KeyError:
        return False
