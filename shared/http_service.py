"""The small HTTP face every background service has: /healthz, /readyz and /metrics.

The services run inside uvicorn so that signal handling and graceful shutdown work the
same way everywhere: the lifespan starts the service's workers and stops them on exit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from prometheus_client import make_asgi_app

from shared.supervision import ReadinessCheck as ReadinessCheck  # re-exported: services use it
from shared.supervision import Supervisor


def service_app(
    title: str,
    workers: Callable[[], AbstractAsyncContextManager[None]],
    readiness: ReadinessCheck,
    **fastapi_options: Any,
) -> FastAPI:
    """An app whose lifespan runs ``workers``; /readyz is 503 with the reason when not ready."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with workers():
            yield

    app = FastAPI(title=title, lifespan=lifespan, **fastapi_options)
    app.mount("/metrics", make_asgi_app())

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        problem = await readiness()
        if problem is not None:
            return JSONResponse({"status": "not ready", "reason": problem}, status_code=503)
        return JSONResponse({"status": "ready"})

    return app


def tasks_router(supervisor: Supervisor) -> APIRouter:
    """``GET /tasks``: every supervised task's state, restarts and last progress (JSON;
    names, counts, times, ids and failure types, never message content)."""
    router = APIRouter()

    @router.get("/tasks")
    async def tasks() -> dict[str, object]:
        return {"service": supervisor.service, "tasks": supervisor.report()}

    return router


async def serve_app(app: FastAPI, *, host: str, port: int) -> None:
    """Run ``app`` until SIGINT or SIGTERM, then shut down gracefully."""
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False)
    await uvicorn.Server(config).serve()
