"""Events about Vigil's own machinery that an inspector must be able to see in the audit
log: a read model that skipped an event it could not apply (so it differs from the log
until it is rebuilt), its rebuilds, and the watchdog's reports of signals nobody was told
about."""

from __future__ import annotations

import uuid
from typing import ClassVar

from pydantic import AwareDatetime, Field

from shared.events.payloads import EVENT_ID_NAMESPACE, EventPayload, SubjectEvent, register_payload
from shared.events.values import MAX_INT64


def projection_stream(projection: str) -> str:
    """The stream of what happened to one projection (read model)."""
    return f"projection-{projection}"


def watchdog_stream(signal_id: uuid.UUID) -> str:
    """The stream of the watchdog's report about one signal."""
    return f"watchdog-{signal_id}"


@register_payload
class ProjectionEventSkipped(EventPayload):
    """A projection could not apply one event and went on without it: its read model is
    missing that event until the projection is fixed and rebuilt (`vigil replay`)."""

    event_type: ClassVar[str] = "org.vigil.projection.event_skipped.v1"

    projection: str
    position: int = Field(
        ge=1, le=MAX_INT64, description="The skipped event's position in the audit log."
    )
    skipped_event_id: uuid.UUID
    skipped_type: str
    reason: str = Field(description="The error's type and where it was raised; no content.")

    @property
    def stream_id(self) -> str:
        return projection_stream(self.projection)


@register_payload
class ProjectionRebuilt(EventPayload):
    """A projection was dropped and replayed from the whole log: skips recorded before it
    no longer hold (the replay records its own)."""

    event_type: ClassVar[str] = "org.vigil.projection.rebuilt.v1"

    projection: str
    rebuild_id: uuid.UUID = Field(description="One per rebuild: every rebuild is recorded.")
    skipped: int = Field(ge=0, le=MAX_INT64, description="Events this rebuild could not apply.")

    @property
    def stream_id(self) -> str:
        return projection_stream(self.projection)


@register_payload
class UndeliveredSignalReported(SubjectEvent):
    """The watchdog told its own channel that nobody had been told about this signal
    within the deadline; recorded once per signal, so it is reported once."""

    event_type: ClassVar[str] = "org.vigil.watchdog.undelivered_signal_reported.v1"

    signal_id: uuid.UUID
    rule_id: str
    signal_recorded_at: AwareDatetime
    deadline_seconds: float
    channels: tuple[str, ...] = Field(description="Where the report went (email, webhook).")

    @property
    def stream_id(self) -> str:
        return watchdog_stream(self.signal_id)

    def report_id(self) -> uuid.UUID:
        """The event's id: one report per signal, whoever records it."""
        return uuid.uuid5(EVENT_ID_NAMESPACE, f"watchdog-report:{self.signal_id}")
