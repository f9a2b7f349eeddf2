"""The storage the notifier's handlers work on: one port, two implementations.

``PostgresNotifierUnitOfWork`` (services/notifier/adapters/postgres.py) runs in
production; ``InMemoryNotifierUnitOfWork`` (services/notifier/adapters/in_memory.py) lets
the notifier's behaviour be tested without a server. Both pass one contract suite
(tests/contract/test_notifier_unit_of_work_contract.py).

A unit of work is used as an async context manager: ``async with uow:`` is one
transaction, committed when the block ends and rolled back when it raises; entering it
again inside is a savepoint (what a nested block does is undone alone when it raises).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from types import TracebackType
from typing import Protocol, Self

from services.notifier.domain.deliveries import Claimed, PlannedDelivery, SignalRecord, Unreadable
from services.notifier.domain.digests import HeldItems, HeldLine
from services.notifier.domain.signature import LoggedFact
from shared.events import EventPayload
from shared.events.notifications import SignalAcknowledged
from shared.eventstore import Appended


class NotifierUnitOfWork(Protocol):
    """The notification log, the deliveries outbox and the digest items, in one
    transaction per use."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...

    # -- the notification log (the notifier's events in the audit log) ----------------------

    async def record(
        self,
        events: Sequence[EventPayload],
        *,
        event_ids: Sequence[uuid.UUID | None] = (),
        causation_id: uuid.UUID | None = None,
        time: datetime | None = None,
    ) -> list[Appended]:
        """Append the notifier's events (ids derived from content unless given); an event
        recorded before is a no-op (``new`` False); the same id with other content raises
        EventIdConflict."""
        ...

    async def lock_notifications(self, notification_ids: Iterable[uuid.UUID]) -> None:
        """Hold these notifications until the transaction ends: another transaction that
        handles one of them waits, then reads what this one recorded."""
        ...

    async def notification_events(self, signal_id: uuid.UUID) -> list[EventPayload]:
        """Every event of one signal's notification stream, in order."""
        ...

    async def recorded(self, event_id: uuid.UUID) -> bool:
        """Whether the audit log holds this event already."""
        ...

    async def acknowledgement(
        self, event_id: uuid.UUID
    ) -> tuple[SignalAcknowledged, datetime] | None:
        """The acknowledgement recorded under ``event_id`` and when (None: there is none)."""
        ...

    async def signal_events(self, signal_id: uuid.UUID) -> list[LoggedFact]:
        """The safety signal's raising event and every later event of its subject stream
        that names it, in log order, each with its stored hash (empty: never raised)."""
        ...

    async def logged_facts(self, event_ids: Sequence[uuid.UUID]) -> list[LoggedFact]:
        """These events with their stored hashes, in log order (an unknown id is left out)."""
        ...

    async def open_timers(self) -> list[list[EventPayload]]:
        """The timer events of every notification neither acknowledged, resolved nor
        withdrawn since it was opened or last reopened, one list per notification."""
        ...

    async def signal_record(self, signal_id: uuid.UUID) -> SignalRecord | None:
        """When the audit log recorded the signal event, and its correlation id."""
        ...

    async def subject_site(self, study_id: str, subject_id: str) -> str | None:
        """The site of the subject's latest enrolment in the audit log (None: the log
        knows no enrolment of it)."""
        ...

    # -- the deliveries outbox ----------------------------------------------------------------

    async def add_deliveries(
        self, deliveries: Sequence[PlannedDelivery], *, give_up_after_seconds: float
    ) -> list[uuid.UUID]:
        """Add planned deliveries, due now; one already planned (same signal, purpose,
        channel and recipient, or the same id) is kept as it is. Returns the new ids."""
        ...

    async def claim_due(
        self, limit: int, *, lease_seconds: float
    ) -> tuple[list[Claimed], list[Unreadable]]:
        """Take up to ``limit`` due pending deliveries, the longest due first, for one
        attempt each: the attempt is counted and the next one moved past the lease."""
        ...

    async def mark_sent(self, delivery_id: uuid.UUID) -> None: ...

    async def mark_failed(
        self, delivery_id: uuid.UUID, error: str, retry_at: datetime | None
    ) -> None:
        """Record a failed attempt: retried at ``retry_at``, or abandoned when None."""
        ...

    async def cancel_pending(
        self, signal_id: uuid.UUID, *, purpose_prefix: str | None = None
    ) -> int:
        """Stop sending what is still pending for a signal (only the deliveries whose
        purpose starts with ``purpose_prefix``, when given); returns how many."""
        ...

    async def deliveries_of(self, signal_id: uuid.UUID) -> list[PlannedDelivery]:
        """A signal's deliveries, in the order they were planned."""
        ...

    # -- the digest items -----------------------------------------------------------------

    async def hold_digest_items(
        self,
        study_id: str,
        lines: Sequence[HeldLine],
        signal_id: uuid.UUID,
        held_at: datetime,
        *,
        item: str = "raised",
    ) -> None:
        """Keep one item about a finding for some people's next digest; holding it again
        changes nothing."""
        ...

    async def drop_digest_items(self, signal_id: uuid.UUID) -> None:
        """Take a withdrawn signal out of the digests not sent yet."""
        ...

    async def digests_sent_to(self, signal_id: uuid.UUID) -> set[str]:
        """The people whose digests already carried something about the signal."""
        ...

    async def held_before(self, study_id: str, cutoff: datetime) -> list[HeldItems]:
        """Per person of a study (in id order), what was held before ``cutoff`` and not
        sent yet, oldest first."""
        ...

    async def mark_digest_sent(self, items: HeldItems, day: date) -> None:
        """These items went out in the digest of ``day``."""
        ...
