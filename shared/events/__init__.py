"""Event envelope, payloads and topics: the contract between services and partners."""

from shared.events import (
    api_keys,  # registers the API keys' events
    notifications,  # registers the notifier's events
    operations,  # registers the supervisor's and the watchdog's events
    reviews,  # registers the workspace's reviews
    workspace_accounts,  # registers the workspace accounts' events
)
from shared.events.envelope import CONTENT_TYPE, Envelope, wrap
from shared.events.payloads import (
    REJECTED_INPUT_STREAM,
    AdverseEventReported,
    DataQualityIssueRaised,
    EventPayload,
    InputRejected,
    LabResultReported,
    LabResultSuperseded,
    LabResultUnreadable,
    MedicationRecorded,
    ResultStatus,
    SafetySignalAmended,
    SafetySignalEscalated,
    SafetySignalRaised,
    SafetySignalReopened,
    SafetySignalResolved,
    SafetySignalRetracted,
    SafetySignalRouted,
    Sex,
    SignalEvent,
    SubjectEnrolled,
    SubjectEvent,
    payload_class,
    register_payload,
    schema_version,
    subject_stream,
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
    "LabResultUnreadable",
    "MedicationRecorded",
    "ResultStatus",
    "SafetySignalAmended",
    "SafetySignalEscalated",
    "SafetySignalRaised",
    "SafetySignalReopened",
    "SafetySignalResolved",
    "SafetySignalRetracted",
    "SafetySignalRouted",
    "Sex",
    "SignalEvent",
    "SubjectEnrolled",
    "SubjectEvent",
    "api_keys",
    "notifications",
    "operations",
    "payload_class",
    "register_payload",
    "reviews",
    "schema_version",
    "subject_stream",
    "workspace_accounts",
    "wrap",
]
