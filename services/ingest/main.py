"""Composition root of ingest: settings in, running HTTP server out."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo

import asyncpg
import structlog
from fastapi import FastAPI

from services.ingest import metrics as ingest_metrics
from services.ingest.adapters.key_cache import ApiKeyCache
from services.ingest.adapters.publisher import KafkaEventPublisher
from services.ingest.adapters.receipts import PostgresReceiptStore
from services.ingest.adapters.study_files import (
    read_code_map_files,
    read_sources_files,
    study_folders,
)
from services.ingest.domain.code_map import code_maps_of
from services.ingest.domain.rate_limit import RateLimiter
from services.ingest.domain.sources import source_registry
from services.ingest.domain.subject_identifiers import subject_identifiers_of
from services.ingest.entrypoints import fhir_api, http_json, mllp
from services.ingest.entrypoints.fhir_api import add_fhir_routes
from services.ingest.entrypoints.http_guard import Limits
from services.ingest.entrypoints.http_json import create_app
from services.ingest.entrypoints.http_refusals import REFUSAL_REASONS
from services.ingest.entrypoints.mllp import MllpHandler
from services.ingest.entrypoints.mllp_listener import MllpLimits, start_mllp_server
from services.ingest.entrypoints.mllp_tls import server_context
from services.ingest.handlers.intake import Intake
from services.ingest.handlers.ports import BrokerUnavailable
from services.settings import VigilSettings
from shared import metrics
from shared.background import DrainLoop
from shared.clock import SystemClock
from shared.consumer_runtime import database_problem
from shared.db.migrate import require_current_schema
from shared.db.pool import create_pool
from shared.failures import OUTAGES, outages_and
from shared.http_service import metrics_credential, serve_app
from shared.kafka import ensure_topics, make_broker, wait_for_topics
from shared.kafka_security import check_kafka_transport
from shared.service_state import Started
from shared.structured_logging import configure_logging
from shared.supervision import Supervisor

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class IngestResources:
    """What ingest's tasks and routes use: the pool and the publisher."""

    pool: asyncpg.Pool
    publisher: KafkaEventPublisher


@dataclass(frozen=True)
class IngestParts:
    """What ingest's lifespan started, for its routes and its readiness check."""

    resources: IngestResources
    intake: Intake
    keys: ApiKeyCache


@asynccontextmanager
async def ingest_resources(settings: VigilSettings) -> AsyncIterator[IngestResources]:
    """Check the schema and the topics, open the pool and the publisher (ingest starts
    without Kafka: it connects when it can); both close on exit."""
    await require_current_schema(settings.database_url)
    await wait_for_topics(settings)
    pool = await create_pool(settings.database_url)
    publisher = KafkaEventPublisher(
        make_broker(settings, client_id="vigil-ingest"),
        timeout=settings.kafka_publish_timeout_seconds,
        ensure_topics=functools.partial(ensure_topics, settings),
    )
    try:
        with contextlib.suppress(BrokerUnavailable):
            await publisher.connect()
        yield IngestResources(pool, publisher)
    finally:
        await publisher.close()
        await pool.close()


async def ingest_problem(parts: IngestParts) -> str | None:
    """Why the running ingest is not ready: its database or its broker."""
    if (problem := await database_problem(parts.resources.pool)) is not None:
        return problem
    if not await parts.resources.publisher.reachable():
        return "the event broker does not answer"
    return None


def build_app(settings: VigilSettings) -> FastAPI:
    """Ingest with its durable receipt and re-drive, started by the app's lifespan.

    Raises InsecureConfiguration, InvalidSources or UnsafeMllpSettings (naming the file,
    field or setting) before anything starts."""
    metrics_token = metrics_credential(settings)  # production refuses to start without
    check_kafka_transport(settings)
    tls = server_context(settings)
    code_maps = code_maps_of(read_code_map_files(settings.study_dir))
    sources_files = read_sources_files(settings.study_dir)
    sources = source_registry(
        sources_files,
        study_folders=study_folders(settings.study_dir),
        default_study=settings.default_study,
        default_zone=ZoneInfo(settings.source_timezone),
    )
    identifiers = subject_identifiers_of(sources_files)
    ingest_metrics.initialise_ingest_formats([http_json.CHANNEL, fhir_api.CHANNEL, mllp.CHANNEL])
    ingest_metrics.initialise_ingest_rejections(
        [http_json.CHANNEL, fhir_api.CHANNEL], REFUSAL_REASONS
    )
    state: Started[IngestParts] = Started("ingest")
    # one limiter per kind for the HTTP channels of this process, so a source's JSON and
    # FHIR traffic draw on one budget (MLLP has its own, VIGIL_MLLP_RATE_*)
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
    supervisor = Supervisor.for_service("ingest", settings)
    clock = SystemClock()

    @asynccontextmanager
    async def workers() -> AsyncIterator[None]:
        async with (
            supervisor.supervising(ingest_resources(settings)) as resources,
            serving_mllp(resources) as parts,
        ):
            state.fill(parts)
            yield

    @asynccontextmanager
    async def serving_mllp(resources: IngestResources) -> AsyncIterator[IngestParts]:
        """Start the tasks and the MLLP listener; the listener closes first on exit."""
        pool, publisher = resources.pool, resources.publisher
        deadline = timedelta(seconds=settings.ingest_redrive_after_seconds)
        store = PostgresReceiptStore(pool, redrive_after=deadline, group_commit=True)
        intake = Intake(store, publisher)
        assert store.writer is not None
        # before the listener: every receipt of every channel is kept by this task
        supervisor.start("receipt-writer", store.writer.run)
        key_cache = ApiKeyCache(
            pool, refresh_seconds=settings.ingest_key_refresh_seconds, clock=clock
        )
        await key_cache.refresh()
        key_refresh = DrainLoop(
            "ingest.key_refresh",
            lambda _progress: key_cache.refresh(),
            retryable=OUTAGES,
            poll_seconds=settings.ingest_key_refresh_seconds,
            max_backoff_seconds=max(settings.ingest_key_refresh_seconds, 5.0),
        )
        redrive = DrainLoop(
            "ingest.redrive",
            intake.redrive,
            retryable=outages_and(BrokerUnavailable),
            poll_seconds=max(settings.ingest_redrive_after_seconds / 4, 0.2),
        )
        limiter = RateLimiter(settings.mllp_rate_per_second, settings.mllp_rate_burst)
        mllp = await start_mllp_server(
            MllpHandler(
                intake,
                code_maps=code_maps,
                identifiers=identifiers,
                limiter=limiter,
                max_bytes=settings.mllp_max_message_bytes,
                processing_ids=frozenset(settings.mllp_processing_ids.split(",")),
                clock=clock,
                clock_skew=timedelta(seconds=settings.ingest_clock_skew_seconds),
            ),
            host=settings.bind_host,
            port=settings.mllp_port,
            registry=sources,
            tls=tls,
            limits=MllpLimits.from_settings(settings),
            development=settings.environment == "development",
        )
        supervisor.start("redrive", redrive.run)
        supervisor.start("key-refresh", key_refresh.run)
        supervisor.start("metrics", metrics.sampling([intake.sample_metrics], retryable=OUTAGES))
        try:
            yield IngestParts(resources, intake, key_cache)
        finally:
            await mllp.close()

    app = create_app(
        lambda: state.get().intake,
        keys=lambda: state.get().keys,
        limits=limits,
        default_study=settings.default_study,
        max_items=settings.ingest_max_items_per_request,
        workers=workers,
        readiness=supervisor.readiness(state.readiness(ingest_problem)),
        metrics_token=metrics_token,
        supervisor=supervisor,
        clock=clock,
        clock_skew=timedelta(seconds=settings.ingest_clock_skew_seconds),
    )
    add_fhir_routes(
        app,
        lambda: state.get().intake,
        default_study=settings.default_study,
        zone=ZoneInfo(settings.source_timezone),
        max_bundle_entries=settings.ingest_max_bundle_entries,
        identifiers=identifiers,
        max_body_bytes=settings.ingest_max_body_bytes,
        clock=clock,
        clock_skew=timedelta(seconds=settings.ingest_clock_skew_seconds),
    )
    return app


async def serve(settings: VigilSettings) -> None:
    """Serve the HTTP API until stopped."""
    configure_logging(settings.log_level, service="ingest")
    await serve_app(build_app(settings), settings, port=settings.ingest_port)
