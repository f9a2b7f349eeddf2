"""The CloudEvents 1.0 envelope that wraps every Vigil event.

On Kafka the envelope travels in structured mode: the whole envelope is the JSON value
(content type ``application/cloudevents+json``) and the key is ``study_id/subject_id``.
Vigil's extension attributes follow the CloudEvents naming rule (lower-case letters and
digits only): ``studyid``, ``correlationid`` and ``causationid``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.events.payloads import EventPayload, payload_class
from shared.events.values import ClinicalDateTime

CONTENT_TYPE = "application/cloudevents+json"


class Envelope(BaseModel):
    """One event: CloudEvents context attributes plus the payload in ``data``."""

    model_config = ConfigDict(
        frozen=True, validate_by_name=True, validate_by_alias=True, extra="forbid"
    )

    specversion: Literal["1.0"] = "1.0"
    id: uuid.UUID
    source: str = Field(min_length=1, description="URI-reference of the producer.")
    type: str = Field(min_length=1, description="Versioned event type, e.g. ...v1.")
    subject: str | None = Field(default=None, description="study_id/subject_id.")
    time: ClinicalDateTime
    datacontenttype: Literal["application/json"] = "application/json"
    study_id: str | None = Field(default=None, alias="studyid", min_length=1)
    correlation_id: uuid.UUID = Field(alias="correlationid")
    causation_id: uuid.UUID | None = Field(default=None, alias="causationid")
    data: dict[str, Any]

    def payload(self) -> EventPayload:
        """The typed payload, validated against the model named by ``type`` (once)."""
        return self._payload

    @cached_property
    def _payload(self) -> EventPayload:
        return payload_class(self.type).model_validate(self.data)

    def to_json(self) -> bytes:
        """The structured-mode CloudEvents JSON, as put on Kafka and in the audit log."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Envelope:
        """Parse and validate an envelope (and its payload type) from JSON."""
        envelope = cls.model_validate_json(raw)
        envelope.payload()
        return envelope

    @property
    def key(self) -> bytes | None:
        """Kafka key: keeps one subject's events in order on one partition."""
        key = self.subject or self.study_id
        return key.encode() if key else None

    def attributes_json(self) -> str:
        """The context attributes without ``data``, as JSON text."""
        return self.model_dump_json(by_alias=True, exclude_none=True, exclude={"data"})


def wrap(
    payload: EventPayload,
    *,
    source: str,
    event_id: uuid.UUID | None = None,
    correlation_id: uuid.UUID | None = None,
    causation_id: uuid.UUID | None = None,
    time: datetime | None = None,
) -> Envelope:
    """Put a payload in an envelope; the event id defaults to one derived from the content.

    A content-derived id makes a resent fact the same event, so every consumer can drop
    the duplicate by id.
    """
    data = payload.model_dump(mode="json")
    event_id = event_id or payload.content_id_of(data)
    envelope = Envelope(
        id=event_id,
        source=source,
        type=payload.event_type,
        subject=payload.subject_key,
        time=time or datetime.now(UTC),
        study_id=payload.study,
        correlation_id=correlation_id or event_id,
        causation_id=causation_id,
        data=data,
    )
    envelope.__dict__["_payload"] = payload  # already validated: spare the re-validation
    return envelope
