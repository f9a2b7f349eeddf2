"""Sends due deliveries, retrying with exponential back-off and jitter."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

import aiosmtplib
import asyncpg
import structlog

from services.notifier.adapters import postgres as deliveries
from services.notifier.domain.messages import Delivery
from shared.background import DrainLoop

log = structlog.get_logger(__name__)


class Sender(Protocol):
    async def send(self, delivery: Delivery) -> None: ...


def retry_delay(attempt: int, *, maximum: float, rng: Callable[[], float] = random.random) -> float:
    """Exponential back-off from 2 s, capped, with full jitter over the upper half."""
    base = min(2.0 * 2 ** max(attempt - 1, 0), maximum)
    return float(base / 2 + rng() * base / 2)


class DeliveryWorker:
    """Claims due deliveries (SKIP LOCKED, so instances share the work), sends, records.

    The row stays locked while it is sent and is marked sent in the same transaction,
    so a crash between sending and committing leaves it pending: it is sent again with
    the same Message-ID, which lets the receiving side recognise the repeat.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        sender: Sender,
        *,
        retry_max_seconds: float,
        batch_size: int = 50,
    ) -> None:
        self._pool = pool
        self._sender = sender
        self._retry_max = retry_max_seconds
        self._batch_size = batch_size
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
            due = await deliveries.claim_due(connection, self._batch_size)
            for delivery in due:
                await self._attempt(connection, delivery)
        return len(due)

    async def _attempt(self, connection: asyncpg.Connection, delivery: Delivery) -> None:
        try:
            await self._sender.send(delivery)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            attempt = await deliveries.attempts_of(connection, delivery.delivery_id) + 1
            delay = retry_delay(attempt, maximum=self._retry_max)
            retry_at = datetime.now(UTC) + timedelta(seconds=delay)
            await deliveries.mark_failed(connection, delivery.delivery_id, repr(error), retry_at)
            log.warning(
                "notifier.delivery_failed",
                delivery_id=str(delivery.delivery_id),
                signal_id=str(delivery.signal_id),
                attempt=attempt,
                retry_in_seconds=round(delay, 1),
                error=repr(error),
            )
            return
        await deliveries.mark_sent(connection, delivery.delivery_id)
        log.info(
            "notifier.delivered",
            delivery_id=str(delivery.delivery_id),
            signal_id=str(delivery.signal_id),
            channel=delivery.channel,
        )
