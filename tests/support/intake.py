"""What the intake tests send: principals, events and receipts of one study."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

from services.ingest.domain.json_events import events_for
from services.ingest.domain.principals import Principal
from services.ingest.handlers.ports import Outgoing, Receipt
from shared.events import Envelope, LabResultReported, Sex, SubjectEnrolled
from shared.events.topics import LAB_RESULTS

STUDY = "NCT05262686"
AT = datetime(2026, 11, 1, 8, tzinfo=UTC)
LAB_A = Principal("lab-a", "api-key:a", frozenset({STUDY}))
LAB_B = Principal("lab-b", "api-key:b", frozenset({STUDY}))
OTHER_STUDY_LAB = Principal("lab-x", "api-key:x", frozenset({"NCT00000000"}))


def lab_result(subject: str = "01-003", value: str = "8.4", message: str = "LAB-1") -> Envelope:
    """A haemoglobin result as the JSON channel makes it (one event, no data issue)."""
    payload = LabResultReported(
        study_id=STUDY,
        subject_id=subject,
        loinc_code="718-7",
        value=Decimal(value),
        unit="g/dL",
        collected_at=AT,
        source_message_id=message,
        observation_key=f"{message}:718-7",
    )
    (envelope,) = events_for(payload, source="/tests", correlation_id=uuid.uuid4(), now=AT)
    return envelope


def enrolment(subject: str = "01-003", site: str = "PKUPH-01") -> Envelope:
    payload = SubjectEnrolled(
        study_id=STUDY,
        subject_id=subject,
        site_id=site,
        sex=Sex.FEMALE,
        birth_date=date(1980, 1, 1),
    )
    (envelope,) = events_for(payload, source="/tests", correlation_id=uuid.uuid4(), now=AT)
    return envelope


def receipt(raw: bytes = b'{"subject_id": "01-003"}', channel: str = "http-json") -> Receipt:
    """A message as it arrived on the JSON channel, accepted so far."""
    return Receipt(channel, "127.0.0.1", "application/json", raw, "accepted")


def owed(value: bytes = b'{"n": 1}', topic: str = LAB_RESULTS) -> Outgoing:
    """A record owed to the audit log, of a new event id."""
    return Outgoing(uuid.uuid4(), topic, b"NCT05262686/01-003", value, {"content-type": "x"})
