"""Event envelope, payloads and topics: the contract between services and partners."""

from shared.events.envelope import CONTENT_TYPE, Envelope, wrap
from shared.events.payloads import (
    REJECTED_INPUT_STREAM,
    DataQualityIssueRaised,
    EventPayload,
    InputRejected,
    LabResultReported,
    ResultStatus,
    SafetySignalRaised,
    Sex,
    SubjectEnrolled,
    SubjectEvent,
    payload_class,
    schema_version,
)

__all__ = [
    "CONTENT_TYPE",
    "REJECTED_INPUT_STREAM",
    "DataQualityIssueRaised",
    "Envelope",
    "EventPayload",
    "InputRejected",
    "LabResultReported",
    "ResultStatus",
    "SafetySignalRaised",
    "Sex",
    "SubjectEnrolled",
    "SubjectEvent",
    "payload_class",
    "schema_version",
    "wrap",
]
