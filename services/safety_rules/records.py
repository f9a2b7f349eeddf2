"""The consumed records as the rules service takes them: valid events, or rejects that
name what is wrong (they go to the dead-letter topic)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from shared.events import Envelope, wrap
from shared.events.dead_letters import input_rejected

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
class Rejected:
    """A record that is not a valid Vigil event; it goes to the dead-letter topic."""

    record: Record
    reason: str


def parse_records(records: Sequence[Record]) -> tuple[list[Envelope], list[Rejected]]:
    """Split records into valid envelopes and rejects that name what is wrong."""
    envelopes: list[Envelope] = []
    rejected: list[Rejected] = []
    for record in records:
        try:
            envelopes.append(Envelope.from_json(record.value))
        except (ValidationError, ValueError) as error:
            rejected.append(Rejected(record, f"not a valid Vigil event: {error}"))
    return envelopes, rejected


def rejected_input(record: Record) -> Envelope:
    """The audit-log event for a record found on the dead-letter topic.

    Its id derives from the content, so a dead letter consumed twice is stored once.
    """
    headers = {key: value.decode(errors="replace") for key, value in record.headers}
    payload = input_rejected(record.value, headers, fallback_origin=record.origin)
    return wrap(payload, source=SOURCE)
