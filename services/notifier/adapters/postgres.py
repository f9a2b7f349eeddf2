"""The notifier's unit of work on PostgreSQL: the notification log, the deliveries outbox
and the digest items, through the SQL of ``notification_log``, ``postgres`` and
``digests``."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from types import TracebackType
from typing import Self

import asyncpg
from asyncpg.transaction import Transaction

from services.notifier.adapters import deliveries as outbox
from services.notifier.adapters import digests, notification_log
from services.notifier.domain.deliveries import Claimed, PlannedDelivery, SignalRecord, Unreadable
from services.notifier.domain.digests import HeldItems, HeldLine
from services.notifier.domain.signature import LoggedFact
from shared.events import EventPayload
from shared.events.notifications import SignalAcknowledged
from shared.eventstore import Appended


class PostgresNotifierUnitOfWork:
    """Each ``async with`` on a pool takes a connection and runs one transaction on it
    (nested: a savepoint), released at the end.

    Given a connection instead, it works on that connection: a block is a transaction on
    it, or a savepoint when the caller's transaction is open already (the catch-up answers
    each event of its round so), and calls outside any block run in whatever the caller
    holds."""

    def __init__(self, source: asyncpg.Pool | asyncpg.Connection) -> None:
        self._pool = source if isinstance(source, asyncpg.Pool) else None
        self._connection: asyncpg.Connection | None = None if self._pool else source
        self._transactions: list[Transaction] = []

    async def __aenter__(self) -> Self:
        if self._connection is None:
            assert self._pool is not None
            self._connection = await self._pool.acquire()
        transaction = self._connection.transaction()
        try:
            await transaction.start()
        except BaseException:
            await self._release()
            raise
        self._transactions.append(transaction)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        transaction = self._transactions.pop()
        try:
            if exc_type is None:
                await transaction.commit()
            else:
                await transaction.rollback()
        finally:
            await self._release()

    async def _release(self) -> None:
        if self._pool is not None and not self._transactions and self._connection is not None:
            connection, self._connection = self._connection, None
            await self._pool.release(connection)

    @property
    def connection(self) -> asyncpg.Connection:
        """The connection in use (only inside a block, for a unit of work on a pool)."""
        if self._connection is None:
            raise RuntimeError("use the unit of work inside `async with`: it has no connection")
        return self._connection

    # -- the notification log --------------------------------------------------------------

    async def record(
        self,
        events: Sequence[EventPayload],
        *,
        event_ids: Sequence[uuid.UUID | None] = (),
        causation_id: uuid.UUID | None = None,
        time: datetime | None = None,
    ) -> list[Appended]:
        return await notification_log.record(
            self.connection, events, event_ids=event_ids, causation_id=causation_id, time=time
        )

    async def lock_notifications(self, notification_ids: Iterable[uuid.UUID]) -> None:
        await notification_log.lock_notifications(self.connection, notification_ids)

    async def notification_events(self, signal_id: uuid.UUID) -> list[EventPayload]:
        return await notification_log.notification_events(self.connection, signal_id)

    async def recorded(self, event_id: uuid.UUID) -> bool:
        return await notification_log.recorded(self.connection, event_id)

    async def acknowledgement(
        self, event_id: uuid.UUID
    ) -> tuple[SignalAcknowledged, datetime] | None:
        return await notification_log.acknowledgement(self.connection, event_id)

    async def signal_events(self, signal_id: uuid.UUID) -> list[LoggedFact]:
        return await notification_log.signal_events(self.connection, signal_id)

    async def logged_facts(self, event_ids: Sequence[uuid.UUID]) -> list[LoggedFact]:
        return await notification_log.logged_facts(self.connection, event_ids)

    async def open_timers(self) -> list[list[EventPayload]]:
        return await notification_log.open_timers(self.connection)

    async def signal_record(self, signal_id: uuid.UUID) -> SignalRecord | None:
        return await notification_log.signal_record(self.connection, signal_id)

    async def subject_site(self, study_id: str, subject_id: str) -> str | None:
        return await notification_log.subject_site(self.connection, study_id, subject_id)

    # -- the deliveries outbox -------------------------------------------------------------

    async def add_deliveries(
        self, deliveries: Sequence[PlannedDelivery], *, give_up_after_seconds: float
    ) -> list[uuid.UUID]:
        return await outbox.add_deliveries(
            self.connection, deliveries, give_up_after_seconds=give_up_after_seconds
        )

    async def claim_due(
        self, limit: int, *, lease_seconds: float
    ) -> tuple[list[Claimed], list[Unreadable]]:
        return await outbox.claim_due(self.connection, limit, lease_seconds=lease_seconds)

    async def mark_sent(self, delivery_id: uuid.UUID) -> None:
        await outbox.mark_sent(self.connection, delivery_id)

    async def mark_failed(
        self, delivery_id: uuid.UUID, error: str, retry_at: datetime | None
    ) -> None:
        await outbox.mark_failed(self.connection, delivery_id, error, retry_at)

    async def cancel_pending(
        self, signal_id: uuid.UUID, *, purpose_prefix: str | None = None
    ) -> int:
        return await outbox.cancel_pending(
            self.connection, signal_id, purpose_prefix=purpose_prefix
        )

    async def deliveries_of(self, signal_id: uuid.UUID) -> list[PlannedDelivery]:
        return await outbox.deliveries_of(self.connection, signal_id)

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
        await digests.hold(self.connection, study_id, lines, signal_id, held_at, item=item)

    async def drop_digest_items(self, signal_id: uuid.UUID) -> None:
        await digests.drop(self.connection, signal_id)

    async def digests_sent_to(self, signal_id: uuid.UUID) -> set[str]:
        return await digests.sent_to(self.connection, signal_id)

    async def held_before(self, study_id: str, cutoff: datetime) -> list[HeldItems]:
        return await digests.held_before(self.connection, study_id, cutoff)

    async def mark_digest_sent(self, items: HeldItems, day: date) -> None:
        await digests.mark_sent(self.connection, items, day)
