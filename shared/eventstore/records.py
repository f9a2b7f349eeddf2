"""What goes into the event store and what comes out of it: values shared by every
implementation of the :class:`~shared.eventstore.ports.EventStore` port."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.events import Envelope
from shared.eventstore.canonical import canonical_bytes, epoch_micros


class EventIdConflict(Exception):
    """An event id arrived again with different content: one of the two is not that event."""

    def __init__(self, event_id: uuid.UUID, position: int | None) -> None:
        where = f"stored at position {position}" if position else "earlier in the same batch"
        super().__init__(f"event {event_id} is already {where} with different content")
        self.event_id = event_id
        self.position = position


class StreamVersionConflict(Exception):
    """A writer expected a stream at one version and found it at another (a concurrent write)."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream_id!r} is at version {actual}, expected {expected}")
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class NewEvent:
    """An event to append; ``expected_version`` is the stream's version before this event
    (0 for a stream that must not exist yet), or None for no check."""

    envelope: Envelope
    expected_version: int | None = None


@dataclass(frozen=True)
class Appended:
    """Where an event is: ``new`` is False when it was stored before (an idempotent no-op)."""

    event_id: uuid.UUID
    position: int
    stream_id: str
    stream_version: int
    new: bool


@dataclass(frozen=True)
class StoredEvent:
    """One row of the log."""

    position: int
    event_id: uuid.UUID
    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    study_id: str | None
    subject_id: str | None
    clinical_time: datetime | None
    recorded_at: datetime
    source: str
    envelope: dict[str, Any]
    payload: dict[str, Any]
    envelope_text: str
    payload_text: str
    prev_hash: bytes
    hash: bytes

    def to_envelope(self) -> Envelope:
        """The event as it was published."""
        return Envelope.model_validate({**self.envelope, "data": self.payload})

    def canonical(self) -> bytes:
        """The bytes the row's hash covers."""
        recorded_us = epoch_micros(self.recorded_at)
        assert recorded_us is not None
        return canonical_bytes(
            position=self.position,
            event_id=str(self.event_id),
            stream_id=self.stream_id,
            stream_version=self.stream_version,
            type=self.type,
            schema_version=self.schema_version,
            clinical_time_us=epoch_micros(self.clinical_time),
            recorded_at_us=recorded_us,
            source=self.source,
            envelope_text=self.envelope_text,
            payload_text=self.payload_text,
        )


@dataclass(frozen=True)
class PayloadEvent:
    """What a projection reads of a row: where it is, its type, subject, when it was
    recorded and its payload; not the envelope and hashes, which only the audit tools
    need."""

    position: int
    event_id: uuid.UUID
    type: str
    study_id: str | None
    subject_id: str | None
    recorded_at: datetime
    payload: dict[str, Any]


@dataclass(frozen=True)
class LoggedEvent:
    """What the services' named queries read of a row: where it is in the log and in its
    stream, what it is, when it was recorded, and its payload (no envelope, no hashes)."""

    position: int
    event_id: uuid.UUID
    stream_id: str
    stream_version: int
    type: str
    study_id: str | None
    subject_id: str | None
    recorded_at: datetime
    payload: dict[str, Any]


@dataclass(frozen=True)
class DueEvent:
    """An event read for a follower with a grace period: ``due`` when it was recorded at
    least that long ago (by the store's clock)."""

    event: StoredEvent
    due: bool


@dataclass(frozen=True)
class Backlog:
    """Events a follower has not read yet: how many, and how old the oldest is (None: none)."""

    events: int
    oldest_age_seconds: float | None


@dataclass(frozen=True)
class EventSelection:
    """A fixed set of event kinds: every event of ``types``, and those of ``payload_type``
    whose payload field ``payload_field`` holds one of ``payload_values``.

    Its values are the code's own constants (PostgreSQL reads them as literals, so that a
    partial index with the same condition serves the query)."""

    types: tuple[str, ...]
    payload_type: str | None = None
    payload_field: str = ""
    payload_values: tuple[str, ...] = ()

    def matches(self, event_type: str, payload: Mapping[str, Any]) -> bool:
        """Whether an event of this type and payload is one of the selection."""
        if event_type in self.types:
            return True
        return event_type == self.payload_type and payload.get(self.payload_field) in set(
            self.payload_values
        )


@dataclass(frozen=True)
class PayloadMatch:
    """The events of ``types`` whose payload field ``field`` holds one of ``values``: a
    field holding text (PostgreSQL would compare a number by its text, the store in
    memory would not).

    ``types`` and ``field`` are the code's own names, which PostgreSQL reads as literals
    (so that a partial index on the field for the type serves a query); ``values`` may
    come from anywhere (they are a query's parameter)."""

    types: tuple[str, ...]
    field: str
    values: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.types or not self.field:
            raise ValueError("a payload match needs at least one type and a field")

    def matches(self, event_type: str, payload: Mapping[str, Any]) -> bool:
        """Whether an event of this type and payload is one the match selects."""
        return event_type in self.types and payload.get(self.field) in set(self.values)


# The type names of every safety signal event begin so (raised, escalated, amended, ...).
SIGNAL_EVENT_PREFIX = "org.vigil.safety_signal."
