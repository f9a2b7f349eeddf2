"""The notifier's unit of work in memory: the same contract as PostgreSQL's (see
tests/contract/test_notifier_unit_of_work_contract.py), for fast tests of the handlers.

One object is the whole store. A block (``async with``) keeps a copy of the store and puts
it back when the block raises, so a rolled-back transaction or savepoint leaves nothing.
There are no concurrent transactions to serialise: ``lock_notifications`` holds nothing.
Times come from the clock it is given, where PostgreSQL uses its own.
"""

from __future__ import annotations

import copy
import dataclasses
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from types import TracebackType
from typing import Self

from services.notifier.adapters.notification_log import SOURCE
from services.notifier.domain.deliveries import Claimed, PlannedDelivery, SignalRecord, Unreadable
from services.notifier.domain.digests import HeldItems, HeldLine
from services.notifier.domain.links import LinkClaims
from services.notifier.domain.signature import LoggedFact
from shared.clock import Clock, SystemClock
from shared.events import (
    Envelope,
    EventPayload,
    SafetySignalRaised,
    SubjectEnrolled,
    schema_version,
    subject_stream,
    wrap,
)
from shared.events.notifications import (
    AssessmentSigned,
    DataQualityIssueAcknowledged,
    NotificationEscalated,
    NotificationOpened,
    NotificationReissued,
    NotificationReopened,
    NotificationResolved,
    NotificationWithdrawn,
    SignalAcknowledged,
    notification_stream,
)
from shared.eventstore import Appended, EventIdConflict
from shared.eventstore.canonical import (
    GENESIS_HASH,
    canonical_bytes,
    chain_hash,
    epoch_micros,
    json_text,
)
from shared.eventstore.records import SIGNAL_EVENT_PREFIX

_TIMERS = (NotificationOpened, NotificationEscalated, NotificationReissued, NotificationReopened)
_CLOSING = (
    SignalAcknowledged,
    AssessmentSigned,
    DataQualityIssueAcknowledged,
    NotificationResolved,
    NotificationWithdrawn,
)


@dataclass(frozen=True)
class _Logged:
    envelope: Envelope
    position: int
    stream_id: str
    version: int
    recorded_at: datetime
    payload_text: str
    hash: bytes = GENESIS_HASH


def _chained(logged: _Logged, prev_hash: bytes) -> _Logged:
    """The row with the hash PostgreSQL's append would give it (see canonical.py)."""
    envelope = logged.envelope
    recorded_us = epoch_micros(logged.recorded_at)
    assert recorded_us is not None
    canonical = canonical_bytes(
        position=logged.position,
        event_id=str(envelope.id),
        stream_id=logged.stream_id,
        stream_version=logged.version,
        type=envelope.type,
        schema_version=schema_version(envelope.type),
        clinical_time_us=epoch_micros(envelope.payload().clinical_time),
        recorded_at_us=recorded_us,
        source=envelope.source,
        envelope_text=envelope.attributes_json(),
        payload_text=logged.payload_text,
    )
    return dataclasses.replace(logged, hash=chain_hash(prev_hash, canonical))


@dataclass
class OutboxRow:
    """One delivery as the outbox holds it, for tests to look at."""

    delivery: PlannedDelivery
    order: int
    give_up_at: datetime
    next_attempt_at: datetime
    status: str = "pending"
    attempts: int = 0
    last_error: str | None = None
    sent_at: datetime | None = None


@dataclass
class _DigestItem:
    line: str
    claims: LinkClaims | None
    held_at: datetime
    digest_day: date | None = None


@dataclass
class _Store:
    log: list[_Logged] = field(default_factory=list)
    by_id: dict[uuid.UUID, _Logged] = field(default_factory=dict)
    outbox: dict[uuid.UUID, OutboxRow] = field(default_factory=dict)
    # (study, person, signal, item)
    digest_items: dict[tuple[str, str, uuid.UUID, str], _DigestItem] = field(default_factory=dict)


class InMemoryNotifierUnitOfWork:
    """The notification log, the deliveries outbox and the digest items in memory."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self._store = _Store()
        self._saved: list[_Store] = []

    async def __aenter__(self) -> Self:
        self._saved.append(copy.deepcopy(self._store))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        saved = self._saved.pop()
        if exc_type is not None:
            self._store = saved

    @property
    def _work(self) -> _Store:
        """The store, for the port's calls: only inside a block, as PostgreSQL's unit of
        work on a pool has no connection outside one (a handler that forgets its block
        must fail its unit tests, not only production)."""
        if not self._saved:
            raise RuntimeError("use the unit of work inside `async with`: it has no connection")
        return self._store

    # -- for tests: what the store holds ---------------------------------------------------

    def outbox(self) -> list[OutboxRow]:
        """Every delivery, in the order it was planned."""
        return sorted(self._store.outbox.values(), key=lambda row: row.order)

    def events(self) -> list[Envelope]:
        """Every event of the log, in position order."""
        return [logged.envelope for logged in self._store.log]

    # -- the notification log --------------------------------------------------------------

    def append(self, envelopes: Sequence[Envelope]) -> list[Appended]:
        """Append events as the event store does: idempotent on event id, and an id
        already stored with other content raises EventIdConflict (nothing is stored)."""
        store = self._work
        staged: dict[uuid.UUID, _Logged] = {}
        versions: dict[str, int] = {}
        results = []
        now = self.clock.now()
        for envelope in envelopes:
            text = json_text(envelope.data)
            earlier = store.by_id.get(envelope.id) or staged.get(envelope.id)
            if earlier is not None:
                if earlier.envelope.type != envelope.type or earlier.payload_text != text:
                    raise EventIdConflict(
                        envelope.id, earlier.position if envelope.id in store.by_id else None
                    )
                results.append(
                    Appended(
                        envelope.id, earlier.position, earlier.stream_id, earlier.version, False
                    )
                )
                continue
            stream_id = envelope.payload().stream_id
            if stream_id not in versions:
                versions[stream_id] = sum(1 for e in store.log if e.stream_id == stream_id)
            versions[stream_id] += 1
            position = len(store.log) + len(staged) + 1
            logged = _Logged(envelope, position, stream_id, versions[stream_id], now, text)
            staged[envelope.id] = logged
            results.append(Appended(envelope.id, position, stream_id, logged.version, True))
        prev_hash = store.log[-1].hash if store.log else GENESIS_HASH
        for staged_row in staged.values():
            logged = _chained(staged_row, prev_hash)
            prev_hash = logged.hash
            store.log.append(logged)
            store.by_id[logged.envelope.id] = logged
        return results

    async def record(
        self,
        events: Sequence[EventPayload],
        *,
        event_ids: Sequence[uuid.UUID | None] = (),
        causation_id: uuid.UUID | None = None,
        time: datetime | None = None,
    ) -> list[Appended]:
        ids = list(event_ids) or [None] * len(events)
        return self.append(
            [
                wrap(event, source=SOURCE, event_id=event_id, causation_id=causation_id, time=time)
                for event, event_id in zip(events, ids, strict=True)
            ]
        )

    async def lock_notifications(self, notification_ids: Iterable[uuid.UUID]) -> None:
        self._work  # noqa: B018 (refused outside a block, as PostgreSQL's is)
        return None  # one store, no concurrent transactions: nothing to wait for

    def _stream(self, stream_id: str) -> list[_Logged]:
        return [logged for logged in self._work.log if logged.stream_id == stream_id]

    async def notification_events(self, signal_id: uuid.UUID) -> list[EventPayload]:
        return [e.envelope.payload() for e in self._stream(notification_stream(signal_id))]

    async def recorded(self, event_id: uuid.UUID) -> bool:
        return event_id in self._work.by_id

    async def acknowledgement(
        self, event_id: uuid.UUID
    ) -> tuple[SignalAcknowledged, datetime] | None:
        logged = self._work.by_id.get(event_id)
        if logged is None:
            return None
        payload = logged.envelope.payload()
        if not isinstance(payload, SignalAcknowledged):
            return None
        return payload, logged.recorded_at

    @staticmethod
    def _fact(logged: _Logged) -> LoggedFact:
        return LoggedFact(
            logged.envelope.id, logged.position, logged.hash, logged.envelope.payload()
        )

    async def signal_events(self, signal_id: uuid.UUID) -> list[LoggedFact]:
        raised = self._work.by_id.get(signal_id)
        if raised is None or raised.envelope.type != SafetySignalRaised.event_type:
            return []
        later = [
            logged
            for logged in self._stream(raised.stream_id)
            if logged.envelope.type.startswith(SIGNAL_EVENT_PREFIX)
            and logged.envelope.type != SafetySignalRaised.event_type
            and getattr(logged.envelope.payload(), "signal_id", None) == signal_id
        ]
        return [self._fact(raised), *(self._fact(logged) for logged in later)]

    async def logged_facts(self, event_ids: Sequence[uuid.UUID]) -> list[LoggedFact]:
        by_id = self._work.by_id
        found = {by_id[i].position: by_id[i] for i in event_ids if i in by_id}
        return [self._fact(found[position]) for position in sorted(found)]

    async def open_timers(self) -> list[list[EventPayload]]:
        streams: dict[str, list[EventPayload]] = {}
        for logged in self._work.log:
            if logged.stream_id.startswith("notification-"):
                streams.setdefault(logged.stream_id, []).append(logged.envelope.payload())
        timers = []
        for stream_id in sorted(streams):
            payloads = streams[stream_id]
            turns = [p for p in payloads if isinstance(p, (*_CLOSING, NotificationReopened))]
            if turns and isinstance(turns[-1], _CLOSING):
                continue
            found: list[EventPayload] = [p for p in payloads if isinstance(p, _TIMERS)]
            if found:
                timers.append(found)
        return timers

    async def signal_record(self, signal_id: uuid.UUID) -> SignalRecord | None:
        logged = self._work.by_id.get(signal_id)
        if logged is None:
            return None
        return SignalRecord(logged.recorded_at, str(logged.envelope.correlation_id))

    async def subject_site(self, study_id: str, subject_id: str) -> str | None:
        enrolments = [
            payload
            for logged in self._stream(subject_stream(study_id, subject_id))
            if isinstance(payload := logged.envelope.payload(), SubjectEnrolled)
        ]
        return enrolments[-1].site_id if enrolments else None

    # -- the deliveries outbox -------------------------------------------------------------

    async def add_deliveries(
        self, deliveries: Sequence[PlannedDelivery], *, give_up_after_seconds: float
    ) -> list[uuid.UUID]:
        outbox = self._work.outbox
        now = self.clock.now()
        added = []
        for delivery in deliveries:
            key = (delivery.signal_id, delivery.purpose, delivery.channel, delivery.recipient)
            if delivery.delivery_id in outbox or any(
                (r.delivery.signal_id, r.delivery.purpose, r.delivery.channel, r.delivery.recipient)
                == key
                for r in outbox.values()
            ):
                continue
            give_up_at = now + timedelta(seconds=give_up_after_seconds)
            outbox[delivery.delivery_id] = OutboxRow(delivery, len(outbox), give_up_at, now)
            added.append(delivery.delivery_id)
        return added

    async def claim_due(
        self, limit: int, *, lease_seconds: float
    ) -> tuple[list[Claimed], list[Unreadable]]:
        now = self.clock.now()
        due = sorted(
            (r for r in self._work.outbox.values() if r.status == "pending"),
            key=lambda r: (r.next_attempt_at, r.order),
        )
        claimed = []
        for row in [r for r in due if r.next_attempt_at <= now][:limit]:
            row.attempts += 1
            row.next_attempt_at = now + timedelta(seconds=lease_seconds)
            claimed.append(Claimed(row.delivery, row.attempts, row.give_up_at))
        return claimed, []  # what is kept here is always readable

    async def mark_sent(self, delivery_id: uuid.UUID) -> None:
        if (row := self._work.outbox.get(delivery_id)) is not None:
            row.status, row.sent_at, row.last_error = "sent", self.clock.now(), None

    async def mark_failed(
        self, delivery_id: uuid.UUID, error: str, retry_at: datetime | None
    ) -> None:
        if (row := self._work.outbox.get(delivery_id)) is None:
            return
        row.last_error = error[:2000]
        if retry_at is None:
            row.status = "abandoned"
        else:
            row.next_attempt_at = retry_at

    async def cancel_pending(
        self, signal_id: uuid.UUID, *, purpose_prefix: str | None = None
    ) -> int:
        pending = [
            r
            for r in self._work.outbox.values()
            if r.delivery.signal_id == signal_id
            and r.status == "pending"
            and (purpose_prefix is None or r.delivery.purpose.startswith(purpose_prefix))
        ]
        for row in pending:
            row.status = "cancelled"
        return len(pending)

    async def deliveries_of(self, signal_id: uuid.UUID) -> list[PlannedDelivery]:
        rows = sorted(self._work.outbox.values(), key=lambda row: row.order)
        return [r.delivery for r in rows if r.delivery.signal_id == signal_id]

    # -- the digest items ------------------------------------------------------------------

    async def hold_digest_items(
        self,
        study_id: str,
        lines: Sequence[HeldLine],
        signal_id: uuid.UUID,
        held_at: datetime,
        *,
        item: str = "raised",
    ) -> None:
        for person_id, line, claims in lines:
            key = (study_id, person_id, signal_id, item)
            self._work.digest_items.setdefault(key, _DigestItem(line, claims, held_at))

    async def drop_digest_items(self, signal_id: uuid.UUID) -> None:
        items = self._work.digest_items
        for key in [k for k, v in items.items() if k[2] == signal_id and v.digest_day is None]:
            del items[key]

    async def digests_sent_to(self, signal_id: uuid.UUID) -> set[str]:
        return {
            person_id
            for (_, person_id, held_signal, _), held in self._work.digest_items.items()
            if held_signal == signal_id and held.digest_day is not None
        }

    async def held_before(self, study_id: str, cutoff: datetime) -> list[HeldItems]:
        waiting = sorted(
            (
                (person_id, held.held_at, signal_id, item, held)
                for (study, person_id, signal_id, item), held in self._work.digest_items.items()
                if study == study_id and held.digest_day is None and held.held_at < cutoff
            ),
            key=lambda entry: entry[:4],
        )
        people: dict[str, list[tuple[uuid.UUID, str, _DigestItem]]] = {}
        for person_id, _, signal_id, item, held in waiting:
            people.setdefault(person_id, []).append((signal_id, item, held))
        return [
            HeldItems(
                study_id,
                person_id,
                tuple(signal_id for signal_id, _, _ in items),
                tuple(item for _, item, _ in items),
                tuple(held.line for _, _, held in items),
                tuple(held.claims for _, _, held in items),
            )
            for person_id, items in people.items()
        ]

    async def mark_digest_sent(self, items: HeldItems, day: date) -> None:
        for signal_id, item in zip(items.signal_ids, items.items, strict=True):
            key = (items.study_id, items.person_id, signal_id, item)
            if (held := self._work.digest_items.get(key)) is not None:
                held.digest_day = day
