"""Composition root of ingest: settings in, running HTTP server out."""

from __future__ import annotations

import uvicorn

from services.ingest.adapters.publisher import EventPublisher
from services.ingest.app import create_app
from shared.kafka import make_broker, wait_for_topics
from shared.settings import VigilSettings
from shared.structured_logging import configure_logging


async def serve(settings: VigilSettings) -> None:
    """Create the topics, then serve the HTTP API until stopped."""
    configure_logging(settings.log_level, service="ingest")
    await wait_for_topics(settings)
    publisher = EventPublisher(
        make_broker(settings, client_id="vigil-ingest"),
        timeout=settings.kafka_publish_timeout_seconds,
    )
    app = create_app(publisher, default_study=settings.default_study)
    config = uvicorn.Config(
        app,
        host=settings.bind_host,
        port=settings.ingest_port,
        log_config=None,
        access_log=False,
    )
    await uvicorn.Server(config).serve()
