"""The rules service's ports in memory, for fast tests of the handlers: the unit of work
of the batch handler, and the watchdog's view of the audit log.

The in-memory store keeps the same contract as PostgreSQL's (append idempotent by event id
and refused for an id with other content, stream versions, an outbox entry once per event,
a batch that commits whole or not at all), so a test runs the real ``handle_batch`` and
engine; ``tests/contract/test_rules_unit_of_work_contract.py`` runs one suite against both.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from services.safety_rules.adapters.undelivered import UndeliveredSignals
from services.safety_rules.domain.history import SubjectHistory
from services.safety_rules.domain.undelivered import UndeliveredSignal
from services.safety_rules.handlers.ports import RulesUnitOfWork, WatchdogLog
from shared.clock import Clock
from shared.events import Envelope, subject_stream
from shared.eventstore import EventIdConflict, EventStore, StreamVersionConflict
from shared.eventstore.canonical import json_text


@dataclass
class _Stored:
    envelope: Envelope
    version: int
    recorded_at: datetime
    #: its place in the whole log (1 first), as an EventIdConflict names it
    position: int


@dataclass
class InMemoryRulesStore:
    """Events by id and by stream; the clock (when the first batch is recorded, less a
    minute) advances one minute per batch."""

    clock: datetime
    events: dict[uuid.UUID, _Stored] = field(default_factory=dict)
    streams: dict[str, list[uuid.UUID]] = field(default_factory=dict)
    outbox: list[tuple[str, Envelope]] = field(default_factory=list)
    histories: dict[tuple[str, str], SubjectHistory] = field(default_factory=dict)

    def unit_of_work(self) -> InMemoryUnitOfWork:
        return InMemoryUnitOfWork(self)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """What a batch stores commits when the block ends, or is undone when it raises (as
        the service's transaction); the kept histories are dropped then, as the service's
        cache is, since they may have folded in what is undone."""
        events, streams = dict(self.events), {k: list(v) for k, v in self.streams.items()}
        outbox = list(self.outbox)
        try:
            yield
        except BaseException:
            self.events, self.streams, self.outbox = events, streams, outbox
            self.histories.clear()
            raise

    def stream(self, study: str, subject: str) -> list[Envelope]:
        ids = self.streams.get(subject_stream(study, subject), [])
        return [self.events[i].envelope for i in ids]


class InMemoryUnitOfWork:
    """One batch's unit of work on an :class:`InMemoryRulesStore`."""

    def __init__(self, store: InMemoryRulesStore) -> None:
        self._store = store

    async def stored(self, event_ids: Sequence[uuid.UUID]) -> tuple[datetime, set[uuid.UUID]]:
        self._store.clock += timedelta(minutes=1)
        return self._store.clock, {i for i in event_ids if i in self._store.events}

    async def append(
        self,
        envelopes: Sequence[Envelope],
        *,
        expected_versions: Mapping[str, int],
        recorded_at: datetime,
    ) -> None:
        store = self._store
        for stream_id, expected in expected_versions.items():
            actual = len(store.streams.get(stream_id, []))
            if actual != expected:
                raise StreamVersionConflict(stream_id, expected, actual)
        new: dict[uuid.UUID, Envelope] = {}
        for envelope in envelopes:
            # as PostgreSQL's store: an id again is a no-op, with other content a conflict;
            # checked for the whole batch before anything of it is stored
            known = store.events.get(envelope.id)
            earlier = known.envelope if known is not None else new.get(envelope.id)
            if earlier is not None:
                if not _same_event(earlier, envelope):
                    raise EventIdConflict(envelope.id, known.position if known else None)
                continue
            new[envelope.id] = envelope
        for envelope in new.values():
            stream = store.streams.setdefault(envelope.payload().stream_id, [])
            stream.append(envelope.id)
            store.events[envelope.id] = _Stored(
                envelope, len(stream), recorded_at, position=len(store.events) + 1
            )

    async def histories(
        self, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], SubjectHistory]:
        """Kept between batches and fed only what is new, as the service's cache is."""
        result = {}
        for study, subject in keys:
            history = self._store.histories.setdefault(
                (study, subject), SubjectHistory(study, subject)
            )
            for event_id in self._store.streams.get(subject_stream(study, subject), []):
                stored = self._store.events[event_id]
                history.apply(
                    stored.envelope.type,
                    stored.envelope.data,
                    event_id,
                    stored.recorded_at,
                    stored.version,
                )
            result[(study, subject)] = history
        return result

    async def enqueue(self, items: Sequence[tuple[Envelope, str]]) -> None:
        """One outbox entry per event, as the outbox table's key on the event id keeps it."""
        queued = {envelope.id for _, envelope in self._store.outbox}
        for envelope, topic in items:
            if envelope.id not in queued:
                queued.add(envelope.id)
                self._store.outbox.append((topic, envelope))


def _same_event(stored: Envelope, again: Envelope) -> bool:
    """Whether an id arrived again with the content it was stored with (type and payload,
    compared as the stored JSON text, as PostgreSQL's store compares them)."""
    return stored.type == again.type and json_text(stored.data) == json_text(again.data)


class InMemoryWatchdogLog:
    """The watchdog's ``WatchdogLog`` on any event store (an in-memory one in tests), with
    the time from ``clock``. One reporting turn at a time, as PostgreSQL's advisory lock
    keeps it: a turn opened while another is open gets None."""

    def __init__(self, store: EventStore, clock: Clock) -> None:
        self.store = store
        self._clock = clock
        self._signals = UndeliveredSignals()
        self._reporting = False

    async def waiting(self) -> tuple[list[UndeliveredSignal], datetime]:
        return await self._signals.refresh_from(self.store), self._clock.now()

    @asynccontextmanager
    async def reporting(self) -> AsyncIterator[EventStore | None]:
        if self._reporting:
            yield None  # another turn is reporting
            return
        self._reporting = True
        try:
            yield self.store
        finally:
            self._reporting = False


if TYPE_CHECKING:
    # mypy proves both have their port's shape
    _UNIT_OF_WORK: type[RulesUnitOfWork] = InMemoryUnitOfWork
    _WATCHDOG_LOG: type[WatchdogLog] = InMemoryWatchdogLog
