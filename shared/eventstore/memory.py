"""The event store in memory: the same contract as PostgreSQL's (the contract suite in
``tests/contract/`` runs on both), for tests of code that needs a log but no database.

Positions, stream versions and the hash chain are computed as PostgreSQL's append computes
them, so a row here has the hash the same row would have there.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime

import orjson

from shared.clock import Clock, SystemClock
from shared.events import SafetySignalRaised, schema_version
from shared.eventstore.canonical import (
    GENESIS_HASH,
    chain_hash,
    json_text,
    subject_columns,
)
from shared.eventstore.records import (
    SIGNAL_EVENT_PREFIX,
    Appended,
    Backlog,
    DueEvent,
    EventIdConflict,
    EventSelection,
    LoggedEvent,
    NewEvent,
    PayloadEvent,
    PayloadMatch,
    StoredEvent,
    StreamVersionConflict,
)


def _logged(event: StoredEvent) -> LoggedEvent:
    return LoggedEvent(
        position=event.position,
        event_id=event.event_id,
        stream_id=event.stream_id,
        stream_version=event.stream_version,
        type=event.type,
        study_id=event.study_id,
        subject_id=event.subject_id,
        recorded_at=event.recorded_at,
        payload=event.payload,
    )


def _by_stream(events: Iterable[StoredEvent]) -> list[StoredEvent]:
    return sorted(events, key=lambda event: (event.stream_id, event.stream_version))


class InMemoryEventStore:
    """The :class:`~shared.eventstore.ports.EventStore` in a list; ``clock`` is what
    ``recorded_at`` and grace periods are read from."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._events: list[StoredEvent] = []  # position n at index n - 1
        self._by_id: dict[uuid.UUID, StoredEvent] = {}
        self._versions: dict[str, int] = {}

    async def append(
        self,
        events: Sequence[NewEvent],
        *,
        expected_versions: Mapping[str, int] | None = None,
        recorded_at: datetime | None = None,
    ) -> list[Appended]:
        if not events:
            return []
        for stream_id, expected in (expected_versions or {}).items():
            if self._versions.get(stream_id, 0) != expected:
                raise StreamVersionConflict(stream_id, expected, self._versions.get(stream_id, 0))
        # as PostgreSQL answers: in UTC
        moment = (recorded_at or self._clock.now()).astimezone(UTC)
        position, prev_hash = await self.head()
        versions = dict(self._versions)
        results: list[Appended] = []
        added: dict[uuid.UUID, StoredEvent] = {}
        for event in events:
            envelope = event.envelope
            payload_text = json_text(envelope.data)
            earlier = self._by_id.get(envelope.id) or added.get(envelope.id)
            if earlier is not None:
                if earlier.type != envelope.type or earlier.payload_text != payload_text:
                    raise EventIdConflict(
                        envelope.id, earlier.position if envelope.id in self._by_id else None
                    )
                results.append(
                    Appended(
                        envelope.id,
                        earlier.position,
                        earlier.stream_id,
                        earlier.stream_version,
                        new=False,
                    )
                )
                continue
            payload = envelope.payload()
            stream_id = payload.stream_id
            current = versions.get(stream_id, 0)
            if event.expected_version is not None and event.expected_version != current:
                raise StreamVersionConflict(stream_id, event.expected_version, current)
            position += 1
            version = versions[stream_id] = current + 1
            clinical_time = payload.clinical_time
            if clinical_time is not None:
                clinical_time = clinical_time.astimezone(UTC)
            envelope_text = envelope.attributes_json()
            study_id, subject_id = subject_columns(envelope.study_id, envelope.subject)
            stored = StoredEvent(
                position=position,
                event_id=envelope.id,
                stream_id=stream_id,
                stream_version=version,
                type=envelope.type,
                schema_version=schema_version(envelope.type),
                study_id=study_id,
                subject_id=subject_id,
                clinical_time=clinical_time,
                recorded_at=moment,
                source=envelope.source,
                envelope=orjson.loads(envelope_text),
                payload=orjson.loads(payload_text),
                envelope_text=envelope_text,
                payload_text=payload_text,
                prev_hash=prev_hash,
                hash=b"",
            )
            # the bytes a PostgreSQL row's hash covers, chained the same way
            stored = replace(stored, hash=chain_hash(prev_hash, stored.canonical()))
            prev_hash = stored.hash
            added[envelope.id] = stored
            results.append(Appended(envelope.id, position, stream_id, version, new=True))
        # nothing is kept before the whole batch passed: all or nothing
        self._events.extend(added.values())
        self._by_id.update(added)
        self._versions = versions
        return results

    def _where(self, keep: Callable[[StoredEvent], bool]) -> list[StoredEvent]:
        return [event for event in self._events if keep(event)]

    async def read_stream(self, stream_id: str, *, after_version: int = 0) -> list[StoredEvent]:
        return self._where(lambda e: e.stream_id == stream_id and e.stream_version > after_version)

    async def read_all(self, *, after_position: int = 0, limit: int = 1000) -> list[StoredEvent]:
        return self._events[max(after_position, 0) :][: max(limit, 0)]

    async def read_payloads(
        self, *, after_position: int = 0, limit: int = 1000
    ) -> list[PayloadEvent]:
        return [
            PayloadEvent(
                position=e.position,
                event_id=e.event_id,
                type=e.type,
                study_id=e.study_id,
                subject_id=e.subject_id,
                recorded_at=e.recorded_at,
                payload=e.payload,
            )
            for e in await self.read_all(after_position=after_position, limit=limit)
        ]

    async def stored_ids(self, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        return {event_id for event_id in event_ids if event_id in self._by_id}

    async def head(self) -> tuple[int, bytes]:
        if not self._events:
            return 0, GENESIS_HASH
        return self._events[-1].position, self._events[-1].hash

    async def read_events(self, event_ids: Iterable[uuid.UUID]) -> list[StoredEvent]:
        found = {self._by_id[i].position: self._by_id[i] for i in event_ids if i in self._by_id}
        return [found[position] for position in sorted(found)]

    async def find_event(self, event_id: uuid.UUID, event_type: str) -> StoredEvent | None:
        event = self._by_id.get(event_id)
        return event if event is not None and event.type == event_type else None

    async def positions_of(self, event_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
        return {i: self._by_id[i].position for i in event_ids if i in self._by_id}

    async def existing_streams(self, stream_ids: Iterable[str]) -> set[str]:
        return {stream_id for stream_id in stream_ids if stream_id in self._versions}

    async def read_streams_after(self, after_versions: Mapping[str, int]) -> list[LoggedEvent]:
        return [
            _logged(e)
            for e in _by_stream(
                self._where(
                    lambda e: (
                        e.stream_id in after_versions
                        and e.stream_version > after_versions[e.stream_id]
                    )
                )
            )
        ]

    async def read_streams_of_types(
        self, stream_ids: Iterable[str], types: Iterable[str]
    ) -> list[LoggedEvent]:
        streams, kinds = set(stream_ids), set(types)
        return [
            _logged(e) for e in self._where(lambda e: e.stream_id in streams and e.type in kinds)
        ]

    async def read_types_between(
        self, types: Iterable[str], *, after: int, upto: int
    ) -> list[LoggedEvent]:
        kinds = set(types)
        return [_logged(e) for e in self._events[max(after, 0) : max(upto, 0)] if e.type in kinds]

    async def read_study_subject_events(
        self, study_id: str, types: Iterable[str]
    ) -> list[LoggedEvent]:
        kinds = set(types)
        return [
            _logged(e)
            for e in _by_stream(
                self._where(
                    lambda e: (
                        e.study_id == study_id
                        and e.stream_id.startswith("subject-")
                        and e.type in kinds
                    )
                )
            )
        ]

    async def read_subject_events(
        self, study_id: str, subject_id: str, types: Iterable[str]
    ) -> list[LoggedEvent]:
        kinds = set(types)
        return [
            _logged(e)
            for e in self._where(
                lambda e: e.study_id == study_id and e.subject_id == subject_id and e.type in kinds
            )
        ]

    async def read_study_events(
        self, study_id: str, types: Iterable[str], *, matching: Iterable[PayloadMatch] = ()
    ) -> list[LoggedEvent]:
        kinds, matches = set(types), list(matching)
        return [
            _logged(e)
            for e in self._where(
                lambda e: (
                    e.study_id == study_id
                    and e.subject_id is not None
                    and (e.type in kinds or any(m.matches(e.type, e.payload) for m in matches))
                )
            )
        ]

    async def read_matching(self, match: PayloadMatch) -> list[LoggedEvent]:
        return [_logged(e) for e in self._where(lambda e: match.matches(e.type, e.payload))]

    async def read_latest_of_type(
        self, event_type: str, study_ids: Iterable[str], *, limit: int
    ) -> list[LoggedEvent]:
        studies = set(study_ids)
        found = self._where(lambda e: e.type == event_type and e.study_id in studies)
        return [_logged(e) for e in reversed(found)][: max(limit, 0)]

    async def read_signal_history(self, stream_id: str, signal_id: uuid.UUID) -> list[LoggedEvent]:
        return [
            _logged(e)
            for e in self._where(
                lambda e: (
                    e.stream_id == stream_id
                    and e.type.startswith(SIGNAL_EVENT_PREFIX)
                    and e.type != SafetySignalRaised.event_type
                    and e.payload.get("signal_id") == str(signal_id)
                )
            )
        ]

    async def read_open_streams(
        self,
        stream_prefix: str,
        types: Iterable[str],
        *,
        turning_types: Iterable[str],
        closing_types: Iterable[str],
    ) -> list[LoggedEvent]:
        kinds, turning, closing = set(types), set(turning_types), set(closing_types)
        in_prefix = self._where(lambda e: e.stream_id.startswith(stream_prefix))
        last_turn = {e.stream_id: e.type for e in in_prefix if e.type in turning}
        closed = {stream for stream, kind in last_turn.items() if kind in closing}
        return [
            _logged(e)
            for e in _by_stream(in_prefix)
            if e.type in kinds and e.stream_id not in closed
        ]

    async def last_of_type(self, stream_id: str, event_type: str) -> LoggedEvent | None:
        found = self._where(lambda e: e.stream_id == stream_id and e.type == event_type)
        return _logged(found[-1]) if found else None

    async def last_of_type_in_streams(
        self, stream_ids: Iterable[str], event_type: str
    ) -> dict[str, LoggedEvent]:
        streams = set(stream_ids)
        return {
            e.stream_id: _logged(e)
            for e in self._where(lambda e: e.stream_id in streams and e.type == event_type)
        }

    async def count_of_type(self, stream_id: str, event_type: str, *, after_version: int) -> int:
        return len(
            self._where(
                lambda e: (
                    e.stream_id == stream_id
                    and e.type == event_type
                    and e.stream_version > after_version
                )
            )
        )

    async def read_selected(
        self,
        selection: EventSelection,
        *,
        after: int,
        upto: int,
        limit: int,
        grace_seconds: float,
    ) -> list[DueEvent]:
        now = self._clock.now()
        selected = [
            e
            for e in self._events[max(after, 0) : max(upto, 0)]
            if selection.matches(e.type, e.payload)
        ][: max(limit, 0)]
        return [
            DueEvent(e, (now - e.recorded_at).total_seconds() >= grace_seconds) for e in selected
        ]

    async def selected_backlog(self, selection: EventSelection, *, after: int) -> Backlog:
        selected = [
            e for e in self._events[max(after, 0) :] if selection.matches(e.type, e.payload)
        ]
        if not selected:
            return Backlog(0, None)
        oldest = min(e.recorded_at for e in selected)
        return Backlog(len(selected), max((self._clock.now() - oldest).total_seconds(), 0.0))
