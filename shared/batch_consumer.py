"""One consumer shape for every service's batches: decode, hand over, dead-letter.

A batch of Kafka records is decoded into envelopes. The ones that decode go to the
service's handler; each one that does not (or that the handler refuses alone) goes to the
dead-letter topic with a reason that names the field and the problem, never the value:
the raw record is kept in the receipt store and only a reference to it travels (see
:mod:`shared.rejections`). Decoding depends on nothing but a record's bytes, so whatever
it raises is that record's fault: it is refused, and never fails the batch (which would be
retried for ever, stopping its partition).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncpg
import structlog
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared.events import Envelope, payload_class
from shared.events.dead_letters import CONTENT_TYPE, storable
from shared.events.topics import DEAD_LETTERS, travels_on
from shared.field_problems import explain
from shared.rejections import KeptRejection, keep_and_dead_letter, keep_raw, kept_record

log = structlog.get_logger(__name__)

UNKNOWN_TYPE = "its type names no known Vigil event type"


@dataclass(frozen=True)
class Record:
    """One consumed Kafka record, as far as a handler cares."""

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


def records_of(message: KafkaMessage) -> list[Record]:
    """The records of a batch (or of one message) as FastStream hands them over."""
    raw = message.raw_message
    consumed = raw if isinstance(raw, tuple) else (raw,)
    return [
        Record(r.topic, r.partition, r.offset, r.value or b"", tuple(r.headers or ()))
        for r in consumed
    ]


@dataclass(frozen=True)
class Decoded:
    """A record that is a valid event."""

    record: Record
    envelope: Envelope


@dataclass(frozen=True)
class Refused:
    """A record a service refuses, with a reason that names fields and problems."""

    record: Record
    reason: str

    def kept(self, rejected_by: str) -> KeptRejection:
        """The record verbatim for the receipt store (a partner or another service
        published it, so no receipt exists), and the dead letter that refers to it."""
        return kept_record(
            self.record.value,
            reason=self.reason,
            origin=self.record.origin,
            rejected_by=rejected_by,
            content_type=self.record.header_texts().get(CONTENT_TYPE),
        )

    @property
    def is_dead_letter(self) -> bool:
        """Refused while recording a dead letter: it is not put on the dead-letter topic
        again (that would go round for ever)."""
        return self.record.topic == DEAD_LETTERS


def invalid_event_reason(error: ValueError) -> str:
    """Why a record is not a valid event, in fields and problems: a pydantic message
    would quote the values (a name, an MRN) into the log and the dead letter."""
    return "not a valid Vigil event: " + explain(error, otherwise=UNKNOWN_TYPE)


def decode_records(
    records: Sequence[Record], *, service: str
) -> tuple[list[Decoded], list[Refused]]:
    """Split records into valid events and refusals that name what is wrong; a record
    that fails to decode in an unexpected way is logged as ``{service}.undecodable_record``."""
    decoded: list[Decoded] = []
    refused: list[Refused] = []
    for record in records:
        try:
            decoded.append(Decoded(record, Envelope.from_json(record.value)))
        except ValueError as error:  # pydantic's ValidationError is one
            refused.append(Refused(record, invalid_event_reason(error)))
        except Exception as error:  # see the module's docstring; the type, never a value
            what = type(error).__name__
            log.warning(f"{service}.undecodable_record", origin=record.origin, error=what)
            refused.append(
                Refused(record, f"not a valid Vigil event: could not be decoded ({what})")
            )
    return decoded, refused


def off_their_topics(
    decoded: Sequence[Decoded], *, reader: str
) -> tuple[list[Decoded], list[Refused]]:
    """Split valid events into those of a type that belongs on the topic they came from
    and refusals for the rest: a safety signal on the lab-results topic, or a data-quality
    issue on the signals topic, is a producer's mistake or a forgery, never the
    ``reader``'s input. The reason names the type and the topic, no value."""
    kept: list[Decoded] = []
    refused: list[Refused] = []
    for item in decoded:
        event_type, topic = item.envelope.type, item.record.topic
        if travels_on(payload_class(event_type), topic):
            kept.append(item)
        else:
            reason = f"not an input of the {reader}: {event_type} does not travel on {topic}"
            refused.append(Refused(item.record, reason))
    return kept, refused


async def dead_letter(
    broker: KafkaBroker,
    pool: asyncpg.Pool,
    refused: Sequence[Refused],
    *,
    rejected_by: str,
    service: str,
) -> None:
    """Keep each refused record in the receipt store, then put a dead letter referring to
    it on the dead-letter topic, with its reason: the raw record never travels further
    than the access-controlled receipt store. A record refused while recording a dead
    letter is kept but not put there again. Returns once the broker took every one."""
    kept = [item.kept(rejected_by) for item in refused]
    pairs = list(zip(refused, kept, strict=True))
    await keep_raw(pool, [letter.receipt for item, letter in pairs if item.is_dead_letter])
    await keep_and_dead_letter(
        broker, pool, [letter for item, letter in pairs if not item.is_dead_letter]
    )
    for item, letter in pairs:
        log.warning(
            f"{service}.dead_lettered",
            reason=item.reason[:300],
            origin=item.record.origin,
            receipt_id=str(letter.receipt.receipt_id),
        )


# the service's work on the decoded events of one batch; returns those it refused alone
BatchHandler = Callable[[list[Decoded]], Awaitable[Sequence[Refused]]]


class DecodingConsumer:
    """A batch subscriber's handler: decode the records, hand the valid events of the
    topic they came on to ``handle``, and dead-letter what could not be decoded, what came
    on another type's topic (see :func:`off_their_topics`) and what ``handle`` refused.
    Each record that is no valid event is logged as ``invalid_record_event`` (the name
    the service has always logged it by).

    An exception from ``handle`` (an outage) propagates before anything is dead-lettered:
    the batch is rewound and consumed again, decoded again, and dead-lettered then.
    """

    def __init__(
        self,
        handle: BatchHandler,
        *,
        broker: KafkaBroker,
        pool: asyncpg.Pool,
        rejected_by: str,
        service: str,
        reader: str,
        invalid_record_event: str,
    ) -> None:
        self._handle = handle
        self._reader = reader
        self._broker = broker
        self._pool = pool
        self._rejected_by = rejected_by
        self._service = service
        self._invalid_record_event = invalid_record_event

    async def __call__(self, message: KafkaMessage) -> None:
        decoded, refused = decode_records(records_of(message), service=self._service)
        for item in refused:
            log.error(
                self._invalid_record_event,
                origin=item.record.origin,
                offset=item.record.offset,
                error=item.reason,
            )
        decoded, misrouted = off_their_topics(decoded, reader=self._reader)
        refused += misrouted
        refused += await self._handle(decoded)
        await dead_letter(
            self._broker, self._pool, refused, rejected_by=self._rejected_by, service=self._service
        )
