"""Sends due deliveries from the outbox, recording every attempt and outcome as an event.

Per batch: (1) claim due deliveries and record ``DeliveryAttempted`` for each, commit;
(2) send them side by side; (3) record each outcome as soon as it is known. A crash after
a server accepted a message and before (3) commits leaves that delivery to be tried again
once its lease runs out, with the same Message-ID / Idempotency-Key: that is the one
window in which a person may get a message twice, and the stream then shows two attempts
before one success.

The outbox holds each message's facts and the claims of its links; the message is
rendered here, just before it is sent, so no live token is ever stored. The same claims
and key make the same link, so the repeat after a crash is the same message.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import aiosmtplib
import asyncpg
import httpx
import structlog

from services.notifier.adapters import notification_log
from services.notifier.adapters import postgres as outbox
from services.notifier.adapters.postgres import Claimed
from services.notifier.adapters.webhook import WebhookRejected
from services.notifier.domain.deliveries import PlannedDelivery, compose
from services.notifier.domain.links import LinkIssuer, relinked, without_tokens
from services.notifier.domain.messages import Delivery
from services.notifier.domain.roster import Roster
from shared import metrics
from shared.background import DrainLoop
from shared.events import EventPayload
from shared.events.notifications import (
    DeliveryAttempted,
    DeliveryFailed,
    DeliveryFellBack,
    DeliverySucceeded,
)

log = structlog.get_logger(__name__)

SEND_ERRORS = (aiosmtplib.SMTPException, OSError, TimeoutError, httpx.HTTPError, WebhookRejected)


class Sender(Protocol):
    async def send(self, delivery: Delivery) -> str: ...


def retry_delay(attempt: int, *, maximum: float, rng: Callable[[], float] = random.random) -> float:
    """Exponential back-off from 2 s, capped, with full jitter over the upper half."""
    base = min(2.0 * 2 ** max(attempt - 1, 0), maximum)
    return float(base / 2 + rng() * base / 2)


def _ids(delivery: PlannedDelivery) -> dict[str, Any]:
    return {
        "study_id": delivery.study_id,
        "subject_id": delivery.subject_id,
        "signal_id": delivery.signal_id,
        "delivery_id": delivery.delivery_id,
        "person_id": delivery.person_id,
        "channel": delivery.channel,
        "purpose": delivery.purpose,
    }


class DeliveryWorker:
    """Claims due deliveries (SKIP LOCKED and a lease, so instances share the work)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        senders: Mapping[str, Sender],
        *,
        rosters: Mapping[str, Roster],
        links: LinkIssuer,
        retry_max_seconds: float,
        give_up_after_seconds: float,
        lease_seconds: float = 60.0,
        batch_size: int = 20,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._pool = pool
        self._senders = senders
        self._rosters = rosters
        self._links = links
        self._retry_max = retry_max_seconds
        self._give_up_after = give_up_after_seconds
        self._lease = lease_seconds
        self._batch_size = batch_size
        self._rng = rng
        self._loop = DrainLoop(
            "notifier.worker", self.send_due, retryable=(asyncpg.PostgresError, OSError)
        )

    def wake(self) -> None:
        """New deliveries were committed."""
        self._loop.wake()

    async def run(self) -> None:
        """Send until cancelled."""
        await self._loop.run()

    async def send_due(self) -> int:
        """Send one batch of due deliveries; returns how many were tried."""
        async with self._pool.acquire() as connection, connection.transaction():
            claimed = await outbox.claim_due(
                connection, self._batch_size, lease_seconds=self._lease
            )
            attempts = [
                DeliveryAttempted(
                    **_ids(c.delivery), attempt=c.attempt, message_id=c.delivery.message_id
                )
                for c in claimed
            ]
            await notification_log.record(connection, attempts)
        if not claimed:
            return 0
        await asyncio.gather(*(self._deliver(c) for c in claimed))
        return len(claimed)

    async def _deliver(self, item: Claimed) -> None:
        """Send one, and record its outcome at once: the repeat window after a crash is
        only the messages in flight, not the whole batch."""
        outcome = await self._send(item)
        async with self._pool.acquire() as connection, connection.transaction():
            if isinstance(outcome, str):
                await self._succeeded(connection, item, outcome)
            else:
                await self._failed(connection, item, outcome)

    async def _send(self, item: Claimed) -> str | BaseException:
        sender = self._senders.get(item.delivery.channel)
        if sender is None:
            return LookupError(f"no sender for channel {item.delivery.channel!r}")
        try:
            return await sender.send(item.delivery.render(self._links.url))
        except SEND_ERRORS as error:
            return error

    async def _succeeded(self, connection: asyncpg.Connection, item: Claimed, detail: str) -> None:
        await outbox.mark_sent(connection, item.delivery.delivery_id)
        event = DeliverySucceeded(**_ids(item.delivery), attempt=item.attempt, detail=detail[:500])
        await notification_log.record(connection, [event])
        # the signal's time and correlation id: for latency, and to follow one result from
        # ingest to this message in the logs
        signal = await connection.fetchrow(
            "SELECT recorded_at, envelope->>'correlationid' AS correlation_id FROM events "
            "WHERE event_id = $1",
            item.delivery.signal_id,
        )
        metrics.record_delivery(
            item.delivery.channel, "sent", signal["recorded_at"] if signal else None
        )
        log.info(
            "notifier.delivery_sent",
            delivery_id=str(item.delivery.delivery_id),
            signal_id=str(item.delivery.signal_id),
            channel=item.delivery.channel,
            attempt=item.attempt,
            correlation_id=signal["correlation_id"] if signal else None,
        )

    async def _failed(
        self, connection: asyncpg.Connection, item: Claimed, error: BaseException
    ) -> None:
        delivery = item.delivery
        delay = retry_delay(item.attempt, maximum=self._retry_max, rng=self._rng)
        retry_at: datetime | None = datetime.now(UTC) + timedelta(seconds=delay)
        if item.give_up_at is not None and retry_at is not None and retry_at > item.give_up_at:
            retry_at = None
        # a receiver's answer may echo the message, link and all: never store a token
        reason = without_tokens(repr(error))
        await outbox.mark_failed(connection, delivery.delivery_id, reason, retry_at)
        events: list[EventPayload] = [
            DeliveryFailed(
                **_ids(delivery), attempt=item.attempt, error=reason[:1000], retry_at=retry_at
            )
        ]
        if retry_at is None:
            events.append(await self._fall_back(connection, delivery))
        await notification_log.record(connection, events)
        metrics.record_delivery(delivery.channel, "failed", None)
        log.warning(
            "notifier.delivery_failed",
            delivery_id=str(delivery.delivery_id),
            signal_id=str(delivery.signal_id),
            channel=delivery.channel,
            attempt=item.attempt,
            retry_at=retry_at.isoformat() if retry_at else None,
            error=reason,
        )

    async def _fall_back(
        self, connection: asyncpg.Connection, failed: PlannedDelivery
    ) -> DeliveryFellBack:
        """The person's next channel, else their backup's first: planned now."""
        planned = self._fallback_for(failed)
        if planned is not None:
            await outbox.add_deliveries(
                connection, [planned], give_up_after_seconds=self._give_up_after
            )
        return DeliveryFellBack(
            **_ids(failed),
            to_delivery_id=planned.delivery_id if planned else None,
            to_person_id=planned.person_id if planned else None,
            to_channel=planned.channel if planned else None,
        )

    def _fallback_for(self, failed: PlannedDelivery) -> PlannedDelivery | None:
        roster = self._rosters.get(failed.study_id)
        person = roster.person(failed.person_id) if roster else None
        if roster is None or person is None:
            return None
        addresses = [(c.kind, c.address) for c in person.channels]
        here = (
            addresses.index((failed.channel, failed.recipient))
            if ((failed.channel, failed.recipient) in addresses)
            else len(addresses)
        )
        if here + 1 < len(addresses):
            target, channel = person, person.channels[here + 1]
        else:
            backup = roster.backup_of(person.id)
            if backup is None:
                return None
            target, channel = backup, backup.channels[0]
        # the target acknowledges as themself: links of their own, the digest's included
        (link,) = relinked([failed.link], target.id, self._links, datetime.now(UTC))
        return compose(
            failed.content,
            purpose=failed.purpose,
            person_id=target.id,
            channel=channel.kind,
            address=channel.address,
            link=link,
            item_links=relinked(failed.item_links, target.id, self._links, datetime.now(UTC)),
        )
