"""Composition root of ingest: settings in, running HTTP server out."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from zoneinfo import ZoneInfo

import asyncpg
from fastapi import FastAPI

from services.ingest import app as http_json
from services.ingest import fhir_api, mllp
from services.ingest.adapters.publisher import BrokerUnavailable, EventPublisher
from services.ingest.app import create_app
from services.ingest.code_map import load_code_maps
from services.ingest.fhir_api import add_fhir_routes
from services.ingest.intake import Intake
from services.ingest.mllp import start_mllp_server
from services.ingest.sources import load_sources
from shared import metrics
from shared.background import DrainLoop
from shared.consumer_runtime import database_problem
from shared.db.migrate import require_current_schema
from shared.db.pool import create_pool
from shared.failures import OUTAGES
from shared.http_service import serve_app, tasks_router
from shared.kafka import make_broker, wait_for_topics
from shared.settings import VigilSettings
from shared.structured_logging import configure_logging
from shared.supervision import Supervisor


def build_app(settings: VigilSettings) -> FastAPI:
    """Ingest with its durable receipt and re-drive, started by the app's lifespan."""
    code_maps = load_code_maps(settings.study_dir)
    router = load_sources(
        settings.study_dir,
        default_study=settings.default_study,
        default_zone=ZoneInfo(settings.source_timezone),
    )
    metrics.initialise_ingest_formats([http_json.CHANNEL, fhir_api.CHANNEL, mllp.CHANNEL])
    running: dict[str, Intake] = {}
    parts: dict[str, object] = {}
    supervisor = Supervisor.for_service("ingest", settings)

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
        redrive = DrainLoop(
            "ingest.redrive",
            intake.redrive,
            retryable=(*OUTAGES, BrokerUnavailable),
            poll_seconds=max(settings.ingest_redrive_after_seconds / 4, 0.2),
        )
        mllp = await start_mllp_server(
            intake,
            host=settings.bind_host,
            port=settings.mllp_port,
            router=router,
            code_maps=code_maps,
        )
        supervisor.start("redrive", redrive.run)
        supervisor.start("metrics", metrics.sampling([intake.sample_metrics], retryable=OUTAGES))
        running["intake"] = intake
        parts.update(pool=pool, publisher=publisher)
        try:
            yield
        finally:
            mllp.close()
            await mllp.wait_closed()
            await supervisor.stop()
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
        default_study=settings.default_study,
        workers=workers,
        readiness=supervisor.readiness(readiness),
    )
    app.include_router(tasks_router(supervisor))
    add_fhir_routes(
        app,
        lambda: running["intake"],
        default_study=settings.default_study,
        zone=ZoneInfo(settings.source_timezone),
    )
    return app


async def serve(settings: VigilSettings) -> None:
    """Serve the HTTP API until stopped."""
    configure_logging(settings.log_level, service="ingest")
    await serve_app(build_app(settings), host=settings.bind_host, port=settings.ingest_port)
