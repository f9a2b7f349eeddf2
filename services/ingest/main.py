"""Composition root of ingest: settings in, running HTTP server out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from zoneinfo import ZoneInfo

import asyncpg
import structlog
from fastapi import FastAPI

from services.ingest import app as http_json
from services.ingest import fhir_api, mllp
from services.ingest.adapters.publisher import BrokerUnavailable, EventPublisher
from services.ingest.app import create_app
from services.ingest.code_map import load_code_maps
from services.ingest.development import development_principal
from services.ingest.fhir_api import add_fhir_routes
from services.ingest.http_guard import Limits
from services.ingest.http_refusals import REFUSAL_REASONS
from services.ingest.intake import Intake
from services.ingest.key_cache import ApiKeyCache
from services.ingest.mllp import start_mllp_server
from services.ingest.principals import Principal
from services.ingest.rate_limit import RateLimiter
from services.ingest.sources import load_sources
from shared import metrics
from shared.background import DrainLoop
from shared.consumer_runtime import database_problem
from shared.db.migrate import require_current_schema
from shared.db.pool import create_pool
from shared.http_service import metrics_credential, serve_app
from shared.kafka import make_broker, wait_for_topics
from shared.kafka_security import check_kafka_transport
from shared.settings import VigilSettings
from shared.structured_logging import configure_logging

log = structlog.get_logger(__name__)


def mllp_principal(settings: VigilSettings) -> Principal | None:
    """Who MLLP senders are taken to be: the development source on a development stack;
    in production nobody, until MLLP authentication exists (every message gets AR)."""
    if settings.environment == "development":
        return development_principal(settings.study_dir, settings.default_study)
    return None


def build_app(settings: VigilSettings) -> FastAPI:
    """Ingest with its durable receipt and re-drive, started by the app's lifespan."""
    metrics_token = metrics_credential(settings)  # production refuses to start without
    check_kafka_transport(settings)
    code_maps = load_code_maps(settings.study_dir)
    router = load_sources(
        settings.study_dir,
        default_study=settings.default_study,
        default_zone=ZoneInfo(settings.source_timezone),
    )
    metrics.initialise_ingest_formats([http_json.CHANNEL, fhir_api.CHANNEL, mllp.CHANNEL])
    metrics.initialise_ingest_rejections([http_json.CHANNEL, fhir_api.CHANNEL], REFUSAL_REASONS)
    running: dict[str, Intake] = {}
    keys: dict[str, ApiKeyCache] = {}
    parts: dict[str, object] = {}
    # one limiter per kind for every channel of this process, so a source's HTTP and MLLP
    # traffic draw on one budget
    limits = Limits(
        max_body_bytes=settings.ingest_max_body_bytes,
        body_timeout_seconds=settings.ingest_body_timeout_seconds,
        per_source=RateLimiter(
            settings.ingest_rate_per_source, settings.ingest_rate_burst_per_source
        ),
        per_unauthenticated_client=RateLimiter(
            settings.ingest_rate_unauthenticated_per_client,
            settings.ingest_rate_burst_unauthenticated_per_client,
        ),
    )

    @asynccontextmanager
    async def workers() -> AsyncIterator[None]:
        await require_current_schema(settings.database_url)
        await wait_for_topics(settings)
        pool = await create_pool(settings.database_url)
        publisher = EventPublisher(
            make_broker(settings, client_id="vigil-ingest"),
            timeout=settings.kafka_publish_timeout_seconds,
        )
        with contextlib.suppress(BrokerUnavailable):
            await publisher.connect()
        deadline = timedelta(seconds=settings.ingest_redrive_after_seconds)
        intake = Intake(pool, publisher, redrive_after=deadline)
        key_cache = ApiKeyCache(pool, refresh_seconds=settings.ingest_key_refresh_seconds)
        await key_cache.refresh()
        key_refresh = DrainLoop(
            "ingest.key_refresh",
            key_cache.refresh,
            retryable=(asyncpg.PostgresError, OSError),
            poll_seconds=settings.ingest_key_refresh_seconds,
            max_backoff_seconds=max(settings.ingest_key_refresh_seconds, 5.0),
        )
        redrive = DrainLoop(
            "ingest.redrive",
            intake.redrive,
            retryable=(asyncpg.PostgresError, OSError, BrokerUnavailable),
            poll_seconds=max(settings.ingest_redrive_after_seconds / 4, 0.2),
        )
        tasks = [
            asyncio.create_task(redrive.run(), name="redrive"),
            asyncio.create_task(key_refresh.run(), name="key-refresh"),
            asyncio.create_task(
                metrics.sample_periodically(
                    [intake.sample_metrics],
                    interval=metrics.SAMPLE_INTERVAL_SECONDS,
                    retryable=(asyncpg.PostgresError, OSError),
                ),
                name="metrics",
            ),
        ]
        mllp_server = await start_mllp_server(
            intake,
            host=settings.bind_host,
            port=settings.mllp_port,
            router=router,
            code_maps=code_maps,
            principal=mllp_principal(settings),
            unauthenticated_limiter=limits.per_unauthenticated_client,
        )
        if mllp_principal(settings) is None:
            log.warning("mllp.unauthenticated", detail=mllp.UNAUTHENTICATED)
        running["intake"] = intake
        keys["cache"] = key_cache
        parts.update(pool=pool, publisher=publisher)
        try:
            yield
        finally:
            mllp_server.close()
            await mllp_server.wait_closed()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await publisher.close()
            await pool.close()

    async def readiness() -> str | None:
        pool, publisher = parts.get("pool"), parts.get("publisher")
        if not isinstance(pool, asyncpg.Pool) or not isinstance(publisher, EventPublisher):
            return "starting"
        if (problem := await database_problem(pool)) is not None:
            return problem
        if not await publisher.reachable():
            return "the event broker does not answer"
        return None

    app = create_app(
        lambda: running["intake"],
        keys=lambda: keys["cache"],
        limits=limits,
        default_study=settings.default_study,
        max_items=settings.ingest_max_items_per_request,
        workers=workers,
        readiness=readiness,
        metrics_token=metrics_token,
    )
    add_fhir_routes(
        app,
        lambda: running["intake"],
        default_study=settings.default_study,
        zone=ZoneInfo(settings.source_timezone),
        max_bundle_entries=settings.ingest_max_bundle_entries,
    )
    return app


async def serve(settings: VigilSettings) -> None:
    """Serve the HTTP API until stopped."""
    configure_logging(settings.log_level, service="ingest")
    await serve_app(build_app(settings), host=settings.bind_host, port=settings.ingest_port)
