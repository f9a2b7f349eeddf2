"""The ports the rules service's handlers work on; their implementations are in
``services/safety_rules/adapters/``, production's beside the in-memory ones of
``services/safety_rules/adapters/in_memory.py``; a port with both passes one contract suite:

- ``RulesUnitOfWork``: ``PostgresRulesUnitOfWork`` (adapters/postgres.py) and
  ``InMemoryUnitOfWork`` (tests/contract/test_rules_unit_of_work_contract.py);
- ``WatchdogLog``: ``PostgresWatchdogLog`` (adapters/undelivered.py) and
  ``InMemoryWatchdogLog`` (tests/contract/test_watchdog_log_contract.py);
- ``ReportChannel``: the watchdog's own ``EmailReports`` and ``WebhookReports``
  (adapters/watchdog_channels.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from services.safety_rules.domain.history import SubjectHistory
from services.safety_rules.domain.undelivered import UndeliveredSignal, WatchdogReport
from shared.events import Envelope
from shared.eventstore import EventStore


class RulesUnitOfWork(Protocol):
    """The storage one batch needs; everything it does commits or rolls back together.

    Reads come first and take no lock; ``append`` takes the append lock, which lasts until
    the commit, so the rules are judged before it and several instances judge at once.
    """

    async def stored(self, event_ids: Sequence[uuid.UUID]) -> tuple[datetime, set[uuid.UUID]]:
        """The time the batch is recorded at, and which of these events are stored already."""
        ...

    async def histories(
        self, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], SubjectHistory]: ...

    async def append(
        self,
        envelopes: Sequence[Envelope],
        *,
        expected_versions: Mapping[str, int],
        recorded_at: datetime,
    ) -> None: ...

    async def enqueue(self, items: Sequence[tuple[Envelope, str]]) -> None: ...


class WatchdogLog(Protocol):
    """The audit log as the watchdog reads it and records its reports in."""

    async def waiting(self) -> tuple[list[UndeliveredSignal], datetime]:
        """The protocol-threshold and serious signals nobody has been told about yet,
        oldest first, and the log's time now (what their ages are measured against)."""
        ...

    def reporting(self) -> AbstractAsyncContextManager[EventStore | None]:
        """One transaction in which this instance alone reports: the event store to read
        the reports made and record new ones in, committed when the block ends; None
        while another instance is reporting."""
        ...


class ReportChannel(Protocol):
    """A second channel of the watchdog's own (e-mail or webhook), not the notifier's."""

    name: str

    async def send(self, report: WatchdogReport) -> None: ...
