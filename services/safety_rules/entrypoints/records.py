"""The consumed records as the rules service takes them: valid events, or rejects that
name what is wrong (they are kept in the receipt store and dead-lettered by reference). A
reason names fields and problems, never the values of the record."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from shared.db.receipts import ReceiptRow
from shared.events import Envelope, wrap
from shared.events.dead_letters import (
    CONTENT_TYPE,
    ORIGIN,
    REASON,
    REJECTED_BY,
    DeadLetter,
    reference_in,
    storable,
)
from shared.events.topics import DEAD_LETTERS
from shared.field_problems import explain
from shared.rejections import KeptRejection, kept_record

log = structlog.get_logger(__name__)

SOURCE = "/vigil/safety-rules"
UNKNOWN_TYPE = "its type names no known Vigil event type"
RAW_DEAD_LETTER_REASON = (
    "a dead letter that carried the raw message: kept in the receipt store, with the "
    "producer's reason"
)


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

    def header_texts(self) -> dict[str, str]:
        """The headers as text the audit log and the receipt store can hold (a partner's
        header may carry any bytes, NUL among them)."""
        return {key: storable(value.decode(errors="replace")) for key, value in self.headers}


@dataclass(frozen=True)
class Entry:
    """A record that is a valid event: what the batch stores and judges."""

    record: Record
    envelope: Envelope


@dataclass(frozen=True)
class Rejected:
    """A record the rules service refuses: kept in the receipt store, a dead letter that
    refers to it on the dead-letter topic, and its InputRejected event in the audit log in
    the transaction that moves past it. ``event_id`` is the refused event's id when the
    record was a valid event (a poison record, or an id conflict): ingest's re-drive learns
    from it that the event is settled."""

    record: Record
    reason: str
    event_id: uuid.UUID | None = None

    def kept(self, rejected_by: str) -> KeptRejection:
        """What is kept of the record (its receipt) and the dead letter referring to it."""
        return kept_rejection(self, rejected_by)

    def rejection(self, rejected_by: str) -> Envelope:
        """The InputRejected event: the same one (same id) that consuming the dead letter
        makes, so whichever is stored first, the other is a duplicate."""
        origin = self.record.origin
        return wrap(self.kept(rejected_by).letter.event(fallback_origin=origin), source=SOURCE)

    @property
    def is_dead_letter(self) -> bool:
        """Refused while recording a dead letter: it is not put on the dead-letter topic
        again (that would go round for ever)."""
        return self.record.topic == DEAD_LETTERS


def invalid_event_reason(error: ValueError) -> str:
    """Why a record is not a valid event, in fields and problems: a pydantic message
    would quote the values (a name, an MRN) into the log and the dead letter."""
    return "not a valid Vigil event: " + explain(error, otherwise=UNKNOWN_TYPE)


def parse_records(records: Sequence[Record]) -> tuple[list[Entry], list[Rejected]]:
    """Split records into valid events and rejects that name what is wrong.

    Decoding a record depends on nothing but its bytes, so whatever it raises is that
    record's fault: it is refused, and never fails the batch (which would be retried for
    ever, stopping its partition)."""
    entries: list[Entry] = []
    rejected: list[Rejected] = []
    for record in records:
        try:
            entries.append(Entry(record, Envelope.from_json(record.value)))
        except ValueError as error:  # pydantic's ValidationError is one
            rejected.append(Rejected(record, invalid_event_reason(error)))
        except Exception as error:  # see above; the type says what failed, never a value
            what = type(error).__name__
            log.warning("rules.undecodable_record", origin=record.origin, error=what)
            reason = f"not a valid Vigil event: could not be decoded ({what})"
            rejected.append(Rejected(record, reason))
    return entries, rejected


def kept_rejection(item: Rejected, rejected_by: str) -> KeptRejection:
    """What the rules service keeps of a record it rejects: the record verbatim in the
    receipt store (a partner published it straight to Kafka, so no receipt exists), and
    the dead letter that refers to it."""
    return kept_record(
        item.record.value,
        reason=item.reason,
        origin=item.record.origin,
        rejected_by=rejected_by,
        content_type=item.record.header_texts().get(CONTENT_TYPE),
    )


def rejected_input(record: Record) -> tuple[Envelope, ReceiptRow | None]:
    """The audit-log event for a record found on the dead-letter topic, and the receipt to
    keep first when the record is a raw dead letter (a partner's, or one from before
    dead letters referred to receipts).

    Its id derives from the content, so a dead letter consumed twice is stored once.
    """
    headers = record.header_texts()
    reference = reference_in(record.value, headers)
    if reference is not None:
        letter = DeadLetter(reference, headers)
        return wrap(letter.event(fallback_origin=record.origin), source=SOURCE), None
    # the producer's reason is free text Vigil did not write (an old dead letter's quoted
    # the values): it stays with the raw message, the audit log says where to find it
    kept = kept_record(
        record.value,
        reason=RAW_DEAD_LETTER_REASON,
        origin=headers.get(ORIGIN) or record.origin,
        rejected_by=headers.get(REJECTED_BY) or "unknown",
        content_type=headers.get(CONTENT_TYPE),
        kept_reason=headers.get(REASON) or "no reason given by the producer",
    )
    return wrap(kept.letter.event(fallback_origin=record.origin), source=SOURCE), kept.receipt
