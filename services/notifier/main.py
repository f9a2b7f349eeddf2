"""Composition root of the notifier: signal consumer, delivery worker, health endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import structlog
from fastapi import FastAPI
from faststream import AckPolicy
from faststream.kafka.annotations import KafkaMessage
from pydantic import ValidationError

from services.notifier.adapters.postgres import add_deliveries
from services.notifier.adapters.smtp import SmtpSender
from services.notifier.delivery_worker import DeliveryWorker
from services.notifier.domain.roster import Roster, load_rosters
from services.notifier.handlers import plan_deliveries
from shared.consumer_runtime import ConsumerRuntime, consumer_runtime, database_readiness
from shared.events import Envelope
from shared.events.topics import SAFETY_SIGNALS
from shared.http_service import serve_app, service_app
from shared.settings import VigilSettings
from shared.structured_logging import configure_logging

log = structlog.get_logger(__name__)
GROUP_ID = "vigil-notifier"


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
    holder: dict[str, ConsumerRuntime] = {}

    @asynccontextmanager
    async def workers() -> AsyncIterator[None]:
        async with consumer_runtime(settings, client_id=GROUP_ID) as runtime:
            worker = DeliveryWorker(
                runtime.pool, sender, retry_max_seconds=settings.notifier_retry_max_seconds
            )
            consumer = SignalConsumer(
                runtime.pool, rosters, worker, base_url=settings.public_base_url
            )
            runtime.broker.subscriber(
                SAFETY_SIGNALS,
                group_id=GROUP_ID,
                batch=True,
                auto_offset_reset="earliest",
                ack_policy=AckPolicy.NACK_ON_ERROR,
                heartbeat_interval_ms=1000,
            )(consumer.__call__)
            await runtime.broker.start()
            worker_task = asyncio.create_task(worker.run(), name="delivery-worker")
            holder["runtime"] = runtime
            log.info("notifier.started", studies=sorted(rosters))
            try:
                yield
            finally:
                worker_task.cancel()

    return service_app("Vigil notifier", workers, database_readiness(holder))


async def serve(settings: VigilSettings) -> None:
    """Run the notifier until stopped."""
    configure_logging(settings.log_level, service="notifier")
    await serve_app(build_app(settings), host=settings.bind_host, port=settings.notifier_port)
