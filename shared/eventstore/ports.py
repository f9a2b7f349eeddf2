"""The event store port: what the services may ask of the audit log.

Every read and write of the log goes through this interface, so the log's table is the
store's own business. Two implementations pass one contract suite
(``tests/contract/test_event_store_contract.py``): :class:`PostgresEventStore`, bound to a
connection so it joins the caller's transaction, and :class:`InMemoryEventStore`, for
tests of code that needs a log but no database.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from shared.eventstore.records import (
    Appended,
    Backlog,
    DueEvent,
    EventSelection,
    LoggedEvent,
    NewEvent,
    PayloadEvent,
    PayloadMatch,
    StoredEvent,
)


class EventStore(Protocol):
    """An append-only, hash-chained log of events in gapless positions.

    Positions start at 1; each stream's versions start at 1. Reads return events in
    position order unless a method says otherwise.
    """

    async def append(
        self,
        events: Sequence[NewEvent],
        *,
        expected_versions: Mapping[str, int] | None = None,
        recorded_at: datetime | None = None,
    ) -> list[Appended]:
        """Append a batch, across any streams, all or nothing.

        Idempotent on event id: an id already stored with the same type and payload is a
        no-op that reports the original position (``new`` False); with different content
        it raises EventIdConflict. A failed ``expected_version``, or a stream of
        ``expected_versions`` at another version when the batch begins, raises
        StreamVersionConflict. ``recorded_at`` defaults to the store's clock."""
        ...

    async def read_stream(self, stream_id: str, *, after_version: int = 0) -> list[StoredEvent]:
        """A stream's events after a version, in version order."""
        ...

    async def read_all(self, *, after_position: int = 0, limit: int = 1000) -> list[StoredEvent]:
        """Up to ``limit`` events after a position (catch-up reading)."""
        ...

    async def read_payloads(
        self, *, after_position: int = 0, limit: int = 1000
    ) -> list[PayloadEvent]:
        """Like :meth:`read_all`, but only what projections use of each event."""
        ...

    async def stored_ids(self, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these events the log holds already."""
        ...

    async def head(self) -> tuple[int, bytes]:
        """The last position and its hash; (0, genesis) for an empty log."""
        ...

    async def read_events(self, event_ids: Iterable[uuid.UUID]) -> list[StoredEvent]:
        """These events, those the log holds (an unknown id is left out)."""
        ...

    async def find_event(self, event_id: uuid.UUID, event_type: str) -> StoredEvent | None:
        """The event with this id if it is of this type; None otherwise."""
        ...

    async def positions_of(self, event_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
        """Where each of these events is in the log (an unknown id is left out)."""
        ...

    async def existing_streams(self, stream_ids: Iterable[str]) -> set[str]:
        """Which of these streams hold at least one event."""
        ...

    async def read_streams_after(self, after_versions: Mapping[str, int]) -> list[LoggedEvent]:
        """Each stream's events after the version given for it, by stream, then version."""
        ...

    async def read_streams_of_types(
        self, stream_ids: Iterable[str], types: Iterable[str]
    ) -> list[LoggedEvent]:
        """The events of these types in these streams."""
        ...

    async def read_types_between(
        self, types: Iterable[str], *, after: int, upto: int
    ) -> list[LoggedEvent]:
        """The events of these types at positions in (``after``, ``upto``]."""
        ...

    async def read_study_subject_events(
        self, study_id: str, types: Iterable[str]
    ) -> list[LoggedEvent]:
        """The events of these types in a study's subject streams, by stream, then version
        (what a rule pack is judged on)."""
        ...

    async def read_subject_events(
        self, study_id: str, subject_id: str, types: Iterable[str]
    ) -> list[LoggedEvent]:
        """The events of these types about one subject of a study (by the study and subject
        they name, whatever their stream), in log order."""
        ...

    async def read_study_events(
        self, study_id: str, types: Iterable[str], *, matching: Iterable[PayloadMatch] = ()
    ) -> list[LoggedEvent]:
        """The events about the subjects of a study (those naming a subject) that are of
        these types or that one of ``matching`` selects, in log order."""
        ...

    async def read_matching(self, match: PayloadMatch) -> list[LoggedEvent]:
        """The events ``match`` selects, in log order (a partial index on its payload
        field for its type serves it)."""
        ...

    async def read_latest_of_type(
        self, event_type: str, study_ids: Iterable[str], *, limit: int
    ) -> list[LoggedEvent]:
        """Up to ``limit`` events of this type in these studies, the latest first
        (``event_type`` is the code's own name: a partial index for the type serves it)."""
        ...

    async def read_signal_history(self, stream_id: str, signal_id: uuid.UUID) -> list[LoggedEvent]:
        """What happened to a raised safety signal after it was raised (escalated, amended,
        resolved, ...): the signal events of its subject stream that name it, but the
        raising itself."""
        ...

    async def read_open_streams(
        self,
        stream_prefix: str,
        types: Iterable[str],
        *,
        turning_types: Iterable[str],
        closing_types: Iterable[str],
    ) -> list[LoggedEvent]:
        """The events of ``types`` in the streams named ``stream_prefix...`` that are open:
        whose last event of ``turning_types`` (if any) is not of ``closing_types``. By
        stream, then version."""
        ...

    async def last_of_type(self, stream_id: str, event_type: str) -> LoggedEvent | None:
        """The last event of this type in a stream; None when it has none."""
        ...

    async def last_of_type_in_streams(
        self, stream_ids: Iterable[str], event_type: str
    ) -> dict[str, LoggedEvent]:
        """The last event of this type in each of these streams (a stream with none is
        left out)."""
        ...

    async def count_of_type(self, stream_id: str, event_type: str, *, after_version: int) -> int:
        """How many events of this type a stream holds after a version."""
        ...

    async def read_selected(
        self,
        selection: EventSelection,
        *,
        after: int,
        upto: int,
        limit: int,
        grace_seconds: float,
    ) -> list[DueEvent]:
        """Up to ``limit`` selected events at positions in (``after``, ``upto``], each
        with whether it was recorded at least ``grace_seconds`` ago."""
        ...

    async def selected_backlog(self, selection: EventSelection, *, after: int) -> Backlog:
        """How many selected events there are after a position, and the oldest one's age."""
        ...
