"""Event envelope, payloads and topics: the contract between services and partners."""

from shared.events.envelope import CONTENT_TYPE, Envelope, wrap
from shared.events.payloads import (
    EventPayload,
    LabResultReported,
    ResultStatus,
    SafetySignalRaised,
    Sex,
    SubjectEnrolled,
    payload_class,
)

__all__ = [
    "CONTENT_TYPE",
    "Envelope",
    "EventPayload",
    "LabResultReported",
    "ResultStatus",
    "SafetySignalRaised",
    "Sex",
    "SubjectEnrolled",
    "payload_class",
    "wrap",
]
