"""Ingest as its composition root builds it, served in the test's own process on real
sockets (HTTP and MLLP): the channels with the real receipt store and broker, without
starting the whole stack as subprocesses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from services.ingest.main import build_app
from services.settings import VigilSettings
from shared.http_server import ConnectionBounds, server_config
from tests.support.components import as_service_role
from tests.support.services import METRICS_TOKEN
from tests.support.studies import loopback_studies
from tests.support.waiting import eventually
from vigil.devstack.ports import free_port


@dataclass(frozen=True)
class IngestInProcess:
    url: str
    mllp_port: int
    settings: VigilSettings


def ingest_settings(admin_dsn: str, kafka_bootstrap: str, **extra: Any) -> VigilSettings:
    """Production settings on the service role, with every shipped HL7 sender allowed
    over plain MLLP from loopback (as the e2e stack runs)."""
    return VigilSettings(
        database_url=as_service_role(admin_dsn),
        kafka_bootstrap=kafka_bootstrap,
        kafka_partitions=1,
        study_dir=loopback_studies(),
        mllp_allow_plain=True,
        mllp_port=free_port(),
        ingest_port=free_port(),
        metrics_token=METRICS_TOKEN,
        **extra,
    )


@asynccontextmanager
async def ingest_in_process(settings: VigilSettings) -> AsyncIterator[IngestInProcess]:
    """``build_app(settings)`` served by uvicorn until the block ends; ready on entry."""
    app = build_app(settings)
    bounds = ConnectionBounds.from_settings(settings)
    server = uvicorn.Server(
        server_config(app, host="127.0.0.1", port=settings.ingest_port, bounds=bounds)
    )
    serving = asyncio.create_task(server.serve())
    url = f"http://127.0.0.1:{settings.ingest_port}"

    async def ready() -> bool:
        if serving.done():
            serving.result()  # it failed to start: say why
        try:
            async with httpx.AsyncClient(base_url=url) as client:
                return (await client.get("/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    try:
        await eventually(ready, timeout=60, what="ingest ready")
        yield IngestInProcess(url, settings.mllp_port, settings)
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=30)
