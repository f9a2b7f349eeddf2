"""The dead-letter contract: what a rejected record carries, and the event it becomes.

Whoever rejects input first keeps the raw message in the receipt store
(``received_messages``: ingest for what it receives, the rules service, channel
``kafka``, for a record published straight to an input topic), then publishes to the
dead-letter topic a *reference* to that receipt (receipt id, SHA-256, size), never the
raw bytes: a rejected message may be full of names, birth dates and record numbers, and
the topic, its consumers and the audit log are no place for them. The headers say why
(fields and problems, never values), where it was found and who rejected it.

The rules service records each dead letter in the ``rejected-input`` stream as
InputRejected (v2). A dead letter without a reference (a partner's, or one published
before v2) is raw: the rules service keeps it in the receipt store first, then records
the reference. The event id derives from the content, so the rejecting side knows in
advance which event must reach the audit log.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.events.payloads import EVENT_ID_NAMESPACE, InputRejected
from shared.events.values import MAX_INT64
from shared.json_input import decode

REASON = "vigil-reason"
ORIGIN = "vigil-origin"
REJECTED_BY = "vigil-rejected-by"
STUDY = "vigil-study-id"
CONTENT_TYPE = "content-type"
RECEIPT_REFERENCE = "application/vnd.vigil.receipt-reference+json"
KAFKA_CHANNEL = "kafka"
_MAX_REASON = 1000
_STUDY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class ReceiptReference(BaseModel):
    """Which kept message a dead letter is about: the value of a dead-letter record."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    receipt_id: uuid.UUID
    raw_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    raw_size: int = Field(ge=0, le=MAX_INT64)
    channel: str = Field(min_length=1, max_length=64)

    @classmethod
    def of(cls, receipt_id: uuid.UUID, raw: bytes, channel: str) -> ReceiptReference:
        return cls(
            receipt_id=receipt_id,
            raw_sha256=hashlib.sha256(raw).hexdigest(),
            raw_size=len(raw),
            channel=channel,
        )


@dataclass(frozen=True)
class DeadLetter:
    """A dead-letter record: the reference as its value, the why and where as headers."""

    reference: ReceiptReference
    headers: dict[str, str]

    @property
    def value(self) -> bytes:
        return self.reference.model_dump_json().encode()

    def event(self, *, fallback_origin: str) -> InputRejected:
        """The audit-log payload of this dead letter."""
        return input_rejected(self.reference, self.headers, fallback_origin=fallback_origin)


def dead_letter(
    reference: ReceiptReference,
    *,
    reason: str,
    origin: str,
    rejected_by: str,
    study_id: str | None = None,
) -> DeadLetter:
    """The dead letter of a kept message (the reason is cut to a size every broker takes)."""
    headers = {
        CONTENT_TYPE: RECEIPT_REFERENCE,
        REASON: reason[:_MAX_REASON],
        ORIGIN: origin,
        REJECTED_BY: rejected_by,
    }
    if study_id is not None:
        headers[STUDY] = study_id
    return DeadLetter(reference, headers)


def reference_in(value: bytes, headers: Mapping[str, str]) -> ReceiptReference | None:
    """The receipt a dead-letter record refers to; None for a raw dead letter."""
    if headers.get(CONTENT_TYPE) != RECEIPT_REFERENCE:
        return None
    try:
        return ReceiptReference.model_validate_json(value)
    except ValidationError:
        return None


def input_rejected(
    reference: ReceiptReference, headers: Mapping[str, str], *, fallback_origin: str
) -> InputRejected:
    """The audit-log payload for a dead letter."""
    study = headers.get(STUDY)
    return InputRejected(
        study_id=study if study and _STUDY_ID.match(study) else None,
        reason=storable(headers.get(REASON, "")) or "no reason given by the producer",
        origin=storable(headers.get(ORIGIN, "")) or storable(fallback_origin) or "unknown",
        rejected_by=storable(headers.get(REJECTED_BY, "")) or "unknown",
        receipt_id=reference.receipt_id,
        raw_sha256=reference.raw_sha256,
        raw_size=reference.raw_size,
        channel=reference.channel,
    )


def storable(text: str) -> str:
    """``text`` as the audit log and the receipt store can hold it: a partner's header may
    carry NUL (which neither text nor jsonb takes) or lone surrogates; each becomes U+FFFD,
    since a dead letter that cannot be recorded would stop the partition it is on."""
    return text.encode(errors="replace").decode().replace("\x00", "\ufffd")


def kafka_receipt_id(origin: str, raw: bytes) -> uuid.UUID:
    """The receipt id of a record kept from Kafka: the same record (topic, partition,
    offset and content) is kept once, however often its batch is consumed again."""
    digest = hashlib.sha256(raw).hexdigest()
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"kafka-receipt:{origin}:{digest}")


def study_named_in(raw: bytes) -> str | None:
    """The study a rejected message names, when it is JSON that names one (a value that
    is not a study id is not taken: the header must not carry free text). Whatever
    ``raw`` holds (nesting too deep to decode included) the answer is a study or None: a
    refusal's bookkeeping must never fail on what it refuses."""
    try:
        document = decode(raw)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    data = document.get("data")
    candidates = [
        document.get("studyid"),
        data.get("study_id") if isinstance(data, dict) else None,
        document.get("study_id"),
    ]
    return next((c for c in candidates if isinstance(c, str) and _STUDY_ID.match(c)), None)
