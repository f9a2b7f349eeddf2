"""Event envelope, payloads and topics: the contract between services and partners."""

from shared.events.envelope import CONTENT_TYPE, Envelope, wrap
from shared.events.payloads import (
    REJECTED_INPUT_STREAM,
    AdverseEventReported,
    DataQualityIssueRaised,
    EventPayload,
    InputRejected,
    LabResultReported,
    LabResultSuperseded,
    MedicationRecorded,
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
    "AdverseEventReported",
    "DataQualityIssueRaised",
    "Envelope",
    "EventPayload",
    "InputRejected",
    "LabResultReported",
    "LabResultSuperseded",
    "MedicationRecorded",
    "ResultStatus",
    "SafetySignalRaised",
    "Sex",
    "SubjectEnrolled",
    "SubjectEvent",
    "payload_class",
    "schema_version",
    "wrap",
]
