"""The small HTTP face every background service has: /healthz, /readyz and /metrics.

The services run inside uvicorn so that signal handling and graceful shutdown work the
same way everywhere: the lifespan starts the service's workers and stops them on exit.

/metrics needs ``Authorization: Bearer <VIGIL_METRICS_TOKEN>``: metric labels name rules,
studies' sources and failure reasons, and their rates tell how busy a trial is. /healthz
and /readyz stay open for probes and say nothing but the state and its reason.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from prometheus_client import make_asgi_app
from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.settings import InsecureConfiguration, VigilSettings

ReadinessCheck = Callable[[], Awaitable[str | None]]
# a token shorter than this can be guessed by a patient scraper
MIN_METRICS_TOKEN_LENGTH = 16


def metrics_credential(settings: VigilSettings) -> SecretStr | None:
    """The /metrics bearer token; production refuses to run without a long enough one."""
    token = settings.metrics_token
    if token is not None and len(token.get_secret_value()) < MIN_METRICS_TOKEN_LENGTH:
        raise InsecureConfiguration(
            f"VIGIL_METRICS_TOKEN is shorter than {MIN_METRICS_TOKEN_LENGTH} characters: use a "
            "random one, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    if token is None and settings.environment == "production":
        raise InsecureConfiguration(
            "VIGIL_METRICS_TOKEN (or VIGIL_METRICS_TOKEN_FILE) is not set: production serves "
            "/metrics only to a scraper that presents it as a bearer token"
        )
    return token


def bearer_protected(app: ASGIApp, token: SecretStr) -> ASGIApp:
    """``app`` behind ``Authorization: Bearer <token>``, compared in constant time."""
    expected = f"Bearer {token.get_secret_value()}".encode()

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, expected):
                response = JSONResponse(
                    {"title": "Unauthorized", "status": 401, "detail": "a bearer token is needed"},
                    status_code=401,
                    media_type="application/problem+json",
                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
                await response(scope, receive, send)
                return
        await app(scope, receive, send)

    return guarded


def service_app(
    title: str,
    workers: Callable[[], AbstractAsyncContextManager[None]],
    readiness: ReadinessCheck,
    *,
    metrics_token: SecretStr | None,
    **fastapi_options: Any,
) -> FastAPI:
    """An app whose lifespan runs ``workers``; /readyz is 503 with the reason when not ready.

    ``metrics_token`` comes from :func:`metrics_credential`; None leaves /metrics open,
    which only development settings allow.
    """

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with workers():
            yield

    app = FastAPI(title=title, lifespan=lifespan, **fastapi_options)
    exporter = make_asgi_app()
    app.mount(
        "/metrics",
        exporter if metrics_token is None else bearer_protected(exporter, metrics_token),
    )

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


async def serve_app(app: FastAPI, *, host: str, port: int) -> None:
    """Run ``app`` until SIGINT or SIGTERM, then shut down gracefully."""
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False)
    await uvicorn.Server(config).serve()
