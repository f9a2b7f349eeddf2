"""The consumed records as the rules service takes them: valid events (``Entry``), or
rejects that name what is wrong (they are kept in the receipt store and dead-lettered by
reference). Decoding is the shared one (:mod:`shared.batch_consumer`); a reject here also
carries the refused event's id and becomes an InputRejected event in the audit log. A
reason names fields and problems, never the values of the record."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from services.safety_rules.domain.event_source import SOURCE
from shared.batch_consumer import Decoded, Record, Refused, decode_records, off_their_topics
from shared.db.receipts import ReceiptRow
from shared.events import Envelope, wrap
from shared.events.dead_letters import (
    CONTENT_TYPE,
    ORIGIN,
    REASON,
    REJECTED_BY,
    DeadLetter,
    reference_in,
)
from shared.events.topics import DEAD_LETTERS
from shared.rejections import kept_record

log = structlog.get_logger(__name__)

# a record that is a valid event: what the batch stores and judges
Entry = Decoded
RAW_DEAD_LETTER_REASON = (
    "a dead letter that carried the raw message: kept in the receipt store, with the "
    "producer's reason"
)


@dataclass(frozen=True)
class Rejected(Refused):
    """A record the rules service refuses: kept in the receipt store, a dead letter that
    refers to it on the dead-letter topic, and its InputRejected event in the audit log in
    the transaction that moves past it. ``event_id`` is the refused event's id when the
    record was a valid event (a poison record, or an id conflict): ingest's re-drive learns
    from it that the event is settled."""

    event_id: uuid.UUID | None = None

    def rejection(self, rejected_by: str) -> Envelope:
        """The InputRejected event: the same one (same id) that consuming the dead letter
        makes, so whichever is stored first, the other is a duplicate."""
        origin = self.record.origin
        return wrap(self.kept(rejected_by).letter.event(fallback_origin=origin), source=SOURCE)


def parse_records(records: Sequence[Record]) -> tuple[list[Entry], list[Rejected]]:
    """Split records into valid events and rejects that name what is wrong (see
    :func:`shared.batch_consumer.decode_records`)."""
    entries, refused = decode_records(records, service="rules")
    return entries, [Rejected(item.record, item.reason) for item in refused]


def on_their_topics(entries: Sequence[Entry]) -> tuple[list[Entry], list[Rejected]]:
    """Split valid events into the rules' input and rejects for the events of a type that
    does not travel on the topic they came from (see
    :func:`shared.batch_consumer.off_their_topics`: only the rules raise signals)."""
    kept, refused = off_their_topics(entries, reader="rules service")
    return kept, [Rejected(item.record, item.reason) for item in refused]


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


def event_id_of(
    topic: str, value: bytes, headers: tuple[tuple[str, bytes], ...]
) -> uuid.UUID | None:
    """The id under which the audit log holds what a consumed record became: the event
    itself, or for a dead letter its InputRejected event; None when the record is no event
    (it left no id to look for)."""
    record = Record(topic, 0, 0, value, headers)
    try:
        if topic == DEAD_LETTERS:
            return rejected_input(record)[0].id
        return Envelope.from_json(value).id
    except Exception:  # whatever a record that is no event raises: nothing to look for
        return None
