"""The consumed records as the rules service takes them: valid events, or rejects that
name what is wrong (they go to the dead-letter topic). A reason names fields and problems,
never the values of the record (the record itself is kept, in the audit log)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from shared.events import Envelope, wrap
from shared.events.dead_letters import dead_letter_headers, input_rejected
from shared.events.topics import DEAD_LETTERS

SOURCE = "/vigil/safety-rules"


@dataclass(frozen=True)
class Record:
    """One consumed Kafka record, as far as the handler cares."""

    topic: str
    partition: int
    offset: int
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def origin(self) -> str:
        return f"{self.topic}/{self.partition}@{self.offset}"


@dataclass(frozen=True)
class Entry:
    """A record that is a valid event: what the batch stores and judges."""

    record: Record
    envelope: Envelope


@dataclass(frozen=True)
class Rejected:
    """A record the rules service refuses: it goes to the dead-letter topic, and its
    InputRejected event to the audit log in the transaction that moves past it.
    ``event_id`` is the refused event's id when the record was a valid event (a poison
    record, or an id conflict): ingest's re-drive learns from it that the event is settled."""

    record: Record
    reason: str
    event_id: uuid.UUID | None = None

    def headers(self, rejected_by: str) -> dict[str, str]:
        return dead_letter_headers(
            reason=self.reason, origin=self.record.origin, rejected_by=rejected_by
        )

    def rejection(self, rejected_by: str) -> Envelope:
        """The InputRejected event: the same one (same id) that consuming the dead letter
        makes, so whichever is stored first, the other is a duplicate."""
        payload = input_rejected(
            self.record.value, self.headers(rejected_by), fallback_origin=self.record.origin
        )
        return wrap(payload, source=SOURCE)

    @property
    def is_dead_letter(self) -> bool:
        """Refused while recording a dead letter: it is not put on the dead-letter topic
        again (that would go round for ever)."""
        return self.record.topic == DEAD_LETTERS


def describe_invalid(error: Exception) -> str:
    """Why a record is not a valid event: the fields and problems, never the values."""
    if isinstance(error, ValidationError):
        problems = [
            f"{'.'.join(str(part) for part in item['loc']) or '(event)'}: {item['msg']}"
            for item in error.errors(include_input=False, include_url=False)
        ]
        return "; ".join(problems[:20])
    return type(error).__name__


def parse_records(records: Sequence[Record]) -> tuple[list[Entry], list[Rejected]]:
    """Split records into valid events and rejects that name what is wrong."""
    entries: list[Entry] = []
    rejected: list[Rejected] = []
    for record in records:
        try:
            entries.append(Entry(record, Envelope.from_json(record.value)))
        except (ValidationError, ValueError) as error:
            rejected.append(Rejected(record, f"not a valid Vigil event: {describe_invalid(error)}"))
    return entries, rejected


def rejected_input(record: Record) -> Envelope:
    """The audit-log event for a record found on the dead-letter topic.

    Its id derives from the content, so a dead letter consumed twice is stored once.
    """
    headers = {key: value.decode(errors="replace") for key, value in record.headers}
    payload = input_rejected(record.value, headers, fallback_origin=record.origin)
    return wrap(payload, source=SOURCE)
