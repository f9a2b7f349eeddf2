"""The receipt store and the event publisher in memory, for tests that need no server.

They pass the same contract suites as PostgreSQL and Kafka (``tests/contract/``): what
the audit log holds is told to the store (``record_in_audit_log``), and the broker's
absence is a switch (``available``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from services.ingest.domain.authorization import (
    Decision,
    Ownership,
    RecordKey,
    Refusal,
    SubjectKey,
    SubjectOwnership,
)
from services.ingest.handlers.ports import (
    BrokerUnavailable,
    Claims,
    Outgoing,
    Receipt,
    StorageUnavailable,
)
from shared.clock import Clock, SystemClock

KAFKA_MAX_REQUEST_BYTES = 1_048_576
"""The Kafka client's default ``max_request_size``: a larger record is refused alone."""

# The headers FastStream adds to every record the Kafka publisher sends: the content type
# (empty for bytes, unless the record names one) and a correlation id (a UUID's text).
_FASTSTREAM_HEADERS = {"content-type": "", "correlation_id": str(uuid.UUID(int=0))}


def kafka_record_size(record: Outgoing) -> int:
    """The size aiokafka's producer gives this record before sending it, and refuses it by
    when over ``max_request_size``: key, value and headers (FastStream's with the record's
    own) as encoded in a record batch, plus the batch's header and a record's most
    overhead."""
    headers = {**_FASTSTREAM_HEADERS, **record.headers}
    size: int = DefaultRecordBatchBuilder.estimate_size_in_bytes(
        record.key, record.value, [(name, text.encode()) for name, text in headers.items()]
    )
    return size


@dataclass(frozen=True)
class KeptReceipt:
    """One kept message and the ids of the events it owes (``received_messages``)."""

    receipt_id: uuid.UUID
    receipt: Receipt
    event_ids: tuple[uuid.UUID, ...]


@dataclass
class _Owed:
    """One owed event (a row of ``ingest_outbox``)."""

    record: Outgoing
    receipt_id: uuid.UUID
    created_at: datetime
    next_check_at: datetime
    redrives: int = 0
    published_at: datetime | None = None


class InMemoryReceiptStore:
    """The ``ReceiptStore`` in memory. ``available = False`` makes every write raise
    StorageUnavailable, as a database that is away does."""

    def __init__(self, *, redrive_after: timedelta, clock: Clock | None = None) -> None:
        self._deadline = redrive_after
        self._clock = clock or SystemClock()
        self._lock = asyncio.Lock()
        self._owed: dict[uuid.UUID, _Owed] = {}
        self._claimed: set[uuid.UUID] = set()
        self._in_audit_log: set[uuid.UUID] = set()
        self.receipts: list[KeptReceipt] = []
        self.subject_owners: dict[SubjectKey, SubjectOwnership] = {}
        self.record_owners: dict[RecordKey, str] = {}
        self.available = True

    def record_in_audit_log(self, event_ids: Sequence[uuid.UUID]) -> None:
        """The audit log now holds these events (or the rules service dead-lettered them)."""
        self._in_audit_log.update(event_ids)

    def owed(self, event_id: uuid.UUID) -> Outgoing | None:
        """The owed event of that id, while it is not forgotten."""
        owed = self._owed.get(event_id)
        return owed.record if owed is not None else None

    def _check_available(self) -> None:
        if not self.available:
            raise StorageUnavailable("cannot record the message durably: the store is away")

    def _keep(self, receipt: Receipt, outgoing: Sequence[Outgoing], receipt_id: uuid.UUID) -> None:
        if any(kept.receipt_id == receipt_id for kept in self.receipts):
            raise StorageUnavailable(f"cannot record the message durably: {receipt_id} is kept")
        now = self._clock.now()
        self.receipts.append(
            KeptReceipt(receipt_id, receipt, tuple(item.event_id for item in outgoing))
        )
        for item in outgoing:
            # a resent message owes the same events: the first row stands
            self._owed.setdefault(item.event_id, _Owed(item, receipt_id, now, now + self._deadline))

    async def record(
        self,
        receipt: Receipt,
        outgoing: Sequence[Outgoing],
        receipt_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        self._check_available()
        receipt_id = receipt_id or uuid.uuid4()
        self._keep(receipt, outgoing, receipt_id)
        return receipt_id

    async def record_owned(
        self,
        receipt: Receipt,
        outgoing: Sequence[Outgoing],
        *,
        claims: Claims,
        judge: Callable[[Ownership], Decision],
    ) -> list[Refusal]:
        async with self._lock:  # one request at a time, as the owners' row locks make it
            self._check_available()
            subjects, records = dict(self.subject_owners), dict(self.record_owners)
            for subject, site in claims.enrolled.items():
                subjects.setdefault(subject, SubjectOwnership(claims.owner, site))
            wanted = set(claims.records)
            for key in wanted:
                records.setdefault(key, claims.owner)
            decision = judge(
                Ownership(
                    subjects={key: subjects[key] for key in set(claims.touched) if key in subjects},
                    records={key: records[key] for key in wanted},
                )
            )
            if decision.refusals:
                return decision.refusals
            for subject, site in decision.moves.items():
                if subject in subjects:
                    subjects[subject] = replace(subjects[subject], site_id=site)
            self._keep(receipt, outgoing, uuid.uuid4())
            self.subject_owners, self.record_owners = subjects, records
        return []

    async def mark_published(self, event_ids: Sequence[uuid.UUID]) -> None:
        self._check_available()
        now = self._clock.now()
        for event_id in event_ids:
            if (owed := self._owed.get(event_id)) is not None:
                owed.published_at = now

    async def settle(self) -> int:
        settled = [event_id for event_id in self._owed if event_id in self._in_audit_log]
        for event_id in settled:
            del self._owed[event_id]
        return len(settled)

    @asynccontextmanager
    async def claim_overdue(self, limit: int) -> AsyncIterator[list[Outgoing]]:
        now = self._clock.now()
        due = sorted(
            (
                (event_id, owed)
                for event_id, owed in self._owed.items()
                if owed.next_check_at <= now and event_id not in self._claimed
            ),
            key=lambda item: item[1].next_check_at,
        )[:limit]
        claimed = [(event_id, owed) for event_id, owed in due if event_id not in self._in_audit_log]
        before = {event_id: (owed.redrives, owed.next_check_at) for event_id, owed in claimed}
        for event_id, owed in claimed:
            owed.next_check_at = now + self._deadline * 2 ** min(owed.redrives + 1, 6)
            owed.redrives += 1
            self._claimed.add(event_id)
        try:
            yield [owed.record for _, owed in claimed]
        except BaseException:
            for event_id, (redrives, next_check_at) in before.items():
                if (undone := self._owed.get(event_id)) is not None:
                    undone.redrives, undone.next_check_at = redrives, next_check_at
            raise
        finally:
            self._claimed.difference_update(before)

    async def unrecorded(self) -> tuple[int, float | None]:
        owed = [o for event_id, o in self._owed.items() if event_id not in self._in_audit_log]
        if not owed:
            return 0, None
        oldest = min(o.created_at for o in owed)
        return len(owed), (self._clock.now() - oldest).total_seconds()


class InMemoryEventPublisher:
    """The ``EventPublisher`` in memory: what it acknowledged is in ``published``. A record
    over the Kafka client's request size is refused alone, as Kafka's client refuses it;
    ``available = False`` is a broker that does not answer."""

    def __init__(self, *, max_record_bytes: int = KAFKA_MAX_REQUEST_BYTES) -> None:
        self._max_record_bytes = max_record_bytes
        self.published: list[Outgoing] = []
        self.available = True

    def _refusal(self, record: Outgoing) -> MessageSizeTooLargeError | None:
        size = kafka_record_size(record)
        if size <= self._max_record_bytes:
            return None
        return MessageSizeTooLargeError(f"The message is {size} bytes when serialized")

    async def publish(self, records: Sequence[Outgoing]) -> None:
        results = await self.publish_each(records)
        if failed := [error for error in results if error is not None]:
            raise BrokerUnavailable(
                f"Kafka did not acknowledge {len(records)} record(s): {failed[0]!r}"
            ) from failed[0]

    async def publish_each(self, records: Sequence[Outgoing]) -> list[BaseException | None]:
        if not self.available:
            raise BrokerUnavailable("cannot connect to Kafka: the broker does not answer")
        results: list[BaseException | None] = []
        for record in records:
            refusal = self._refusal(record)
            if refusal is None:
                self.published.append(record)
            results.append(refusal)
        return results

    async def reachable(self, timeout: float = 2.0) -> bool:
        return self.available

    def topic(self, topic: str) -> list[Outgoing]:
        """The records acknowledged on one topic, in order."""
        return [record for record in self.published if record.topic == topic]
