"""Composition root of the notifier: signal consumer, delivery worker, health endpoints."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import structlog
from aiokafka.errors import KafkaError
from fastapi import FastAPI
from faststream import AckPolicy
from faststream.kafka.annotations import KafkaMessage
from pydantic import ValidationError

from services.notifier.adapters.postgres import add_deliveries
from services.notifier.adapters.smtp import SmtpSender
from services.notifier.delivery_worker import DeliveryWorker, Sender
from services.notifier.domain.messages import Delivery
from services.notifier.domain.roster import Roster, load_rosters
from services.notifier.handlers import plan_deliveries
from shared import metrics
from shared.consumer_runtime import ConsumerRuntime, consumer_runtime, database_readiness
from shared.events import Envelope
from shared.events.topics import SAFETY_SIGNALS
from shared.http_service import serve_app, service_app
from shared.kafka import lag_sampler
from shared.settings import VigilSettings
from shared.structured_logging import configure_logging

log = structlog.get_logger(__name__)
GROUP_ID = "vigil-notifier"


class MeasuredSender:
    """Wraps the real sender: counts each attempt by channel and outcome, observes
    signal-to-delivery latency, and logs the attempt with the signal's correlation id.

    Wiring only, until the delivery worker records these itself (then drop this class).
    """

    def __init__(self, inner: Sender, pool: asyncpg.Pool) -> None:
        self._inner = inner
        self._pool = pool

    async def send(self, delivery: Delivery) -> None:
        row = await self._pool.fetchrow(
            "SELECT recorded_at, envelope->>'correlationid' AS correlation_id FROM events "
            "WHERE event_id = $1",
            delivery.signal_id,
        )
        context = {
            "correlation_id": row["correlation_id"] if row else None,
            "signal_id": str(delivery.signal_id),
            "delivery_id": str(delivery.delivery_id),
            "channel": delivery.channel,
        }
        try:
            await self._inner.send(delivery)
        except Exception as error:
            metrics.record_delivery(delivery.channel, "failed", None)
            log.warning("notifier.delivery_attempt_failed", **context, error=repr(error))
            raise
        metrics.record_delivery(delivery.channel, "sent", row["recorded_at"] if row else None)
        log.info("notifier.delivery_sent", **context)


async def sample_deliveries(pool: asyncpg.Pool) -> None:
    """Set the gauge of queued deliveries by channel and state (failing: pending after a
    failed attempt)."""
    rows = await pool.fetch(
        """SELECT channel,
                  CASE WHEN status = 'pending' AND attempts > 0 THEN 'failing' ELSE status END
                      AS state,
                  count(*) AS n
           FROM deliveries GROUP BY 1, 2"""
    )
    counts = {(row["channel"], row["state"]): row["n"] for row in rows}
    for channel in {"email"} | {channel for channel, _ in counts}:
        for state in metrics.DELIVERY_STATES:  # a state that emptied must read 0
            gauge = metrics.DELIVERIES_BY_STATE.labels(channel=channel, state=state)
            gauge.set(counts.get((channel, state), 0))


class SignalConsumer:
    """Per batch of signals: plan the deliveries and store them in one transaction."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        rosters: dict[str, Roster],
        worker: DeliveryWorker,
        *,
        base_url: str,
    ) -> None:
        self._pool = pool
        self._rosters = rosters
        self._worker = worker
        self._base_url = base_url

    async def __call__(self, message: KafkaMessage) -> None:
        raw = message.raw_message
        consumed = raw if isinstance(raw, tuple) else (raw,)
        envelopes = []
        for record in consumed:
            try:
                envelopes.append(Envelope.from_json(record.value or b""))
            except (ValidationError, ValueError) as error:
                log.error("notifier.invalid_signal", offset=record.offset, error=str(error))
        for envelope in envelopes:
            log.info(
                "notifier.signal_received",
                signal_id=str(envelope.id),
                correlation_id=str(envelope.correlation_id),
            )
        planned = plan_deliveries(envelopes, self._rosters, base_url=self._base_url)
        try:
            async with self._pool.acquire() as connection, connection.transaction():
                added = await add_deliveries(connection, planned)
        except Exception:
            log.exception("notifier.batch_failed", signals=len(envelopes))
            await asyncio.sleep(1.0)  # rewound and retried: do not spin
            raise
        if added:
            self._worker.wake()
        log.info("notifier.batch_done", signals=len(envelopes), deliveries_added=added)


def build_app(settings: VigilSettings) -> FastAPI:
    """The notifier as an ASGI app whose lifespan runs the consumer and the worker."""
    rosters = load_rosters(settings.study_dir)  # an invalid roster stops the start here
    sender = SmtpSender(settings.smtp_url, settings.smtp_from)
    metrics.initialise_delivery_channels(["email"])
    holder: dict[str, ConsumerRuntime] = {}

    @asynccontextmanager
    async def workers() -> AsyncIterator[None]:
        async with consumer_runtime(settings, client_id=GROUP_ID) as runtime:
            worker = DeliveryWorker(
                runtime.pool,
                MeasuredSender(sender, runtime.pool),
                retry_max_seconds=settings.notifier_retry_max_seconds,
            )
            consumer = SignalConsumer(
                runtime.pool, rosters, worker, base_url=settings.public_base_url
            )
            subscriber = runtime.broker.subscriber(
                SAFETY_SIGNALS,
                group_id=GROUP_ID,
                batch=True,
                auto_offset_reset="earliest",
                ack_policy=AckPolicy.NACK_ON_ERROR,
                heartbeat_interval_ms=1000,
            )
            subscriber(consumer.__call__)
            await runtime.broker.start()
            sampled: list[metrics.Sampler] = [
                lag_sampler(subscriber, group=GROUP_ID),
                functools.partial(sample_deliveries, runtime.pool),
            ]
            tasks = [
                asyncio.create_task(worker.run(), name="delivery-worker"),
                asyncio.create_task(
                    metrics.sample_periodically(
                        sampled,
                        interval=metrics.SAMPLE_INTERVAL_SECONDS,
                        retryable=(asyncpg.PostgresError, OSError, KafkaError, TimeoutError),
                    ),
                    name="metrics",
                ),
            ]
            holder["runtime"] = runtime
            log.info("notifier.started", studies=sorted(rosters))
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()

    return service_app("Vigil notifier", workers, database_readiness(holder))


async def serve(settings: VigilSettings) -> None:
    """Run the notifier until stopped."""
    configure_logging(settings.log_level, service="notifier")
    await serve_app(build_app(settings), host=settings.bind_host, port=settings.notifier_port)
