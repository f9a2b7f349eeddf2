"""The small HTTP face every background service has: /healthz, /readyz and /metrics.

The services run inside uvicorn so that signal handling and graceful shutdown work the
same way everywhere: the lifespan starts the service's workers and stops them on exit.

/metrics needs ``Authorization: Bearer <VIGIL_METRICS_TOKEN>``: metric labels name rules,
studies' sources and failure reasons, and their rates tell how busy a trial is. /healthz
and /readyz stay open for probes and say nothing but the state and its reason.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from prometheus_client import make_asgi_app
from pydantic import SecretStr
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from shared import metrics
from shared.http_server import ConnectionBounds, server_config
from shared.json_input import decode
from shared.settings import CommonSettings, InsecureConfiguration
from shared.supervision import ReadinessCheck as ReadinessCheck  # re-exported: services use it
from shared.supervision import Supervisor

# a token shorter than this can be guessed by a patient scraper
MIN_METRICS_TOKEN_LENGTH = 16


def metrics_credential(settings: CommonSettings) -> SecretStr | None:
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


class OperatorEndpoint:
    """An operator's endpoint (``/metrics``, ``/tasks``) behind ``Authorization: Bearer
    <token>`` (constant-time comparison) unless ``token`` is None (development)."""

    def __init__(self, inner: ASGIApp, token: SecretStr | None, *, realm: str) -> None:
        self._inner = inner
        self._expected = None if token is None else f"Bearer {token.get_secret_value()}".encode()
        self._realm = realm

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._expected is not None:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                response = JSONResponse(
                    {"title": "Unauthorized", "status": 401, "detail": "a bearer token is needed"},
                    status_code=401,
                    media_type="application/problem+json",
                    headers={"WWW-Authenticate": f'Bearer realm="{self._realm}"'},
                )
                await response(scope, receive, send)
                return
        await self._inner(scope, receive, send)


def _tasks_report(supervisor: Supervisor) -> ASGIApp:
    """``GET /tasks``: every supervised task's state, restarts and last progress (JSON;
    names, counts, times, ids and failure types, never message content)."""

    async def report(scope: Scope, receive: Receive, send: Send) -> None:
        body = {"service": supervisor.service, "tasks": supervisor.report()}
        await JSONResponse(body)(scope, receive, send)

    return report


class _JsonInput(Request):
    """The request a route sees: its body read through the request the framework made (so
    an exception handler, given that one, finds the body too), its JSON decoded by
    :func:`shared.json_input.decode`."""

    def __init__(self, request: Request) -> None:
        super().__init__(request.scope, request.receive)
        self._received = request

    async def stream(self) -> AsyncGenerator[bytes, None]:
        async for chunk in self._received.stream():
            yield chunk

    async def body(self) -> bytes:
        return await self._received.body()

    async def json(self) -> Any:
        return decode(await self.body())


class JsonInputRoute(APIRoute):
    """A route whose JSON body is decoded by :func:`shared.json_input.decode`: a body
    nested too deeply is invalid JSON (422), not a RecursionError for the framework to
    answer 400 or 500. Every route of a :func:`service_app` is one; a router a service
    includes says so itself (``APIRouter(route_class=JsonInputRoute)``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def decoded(request: Request) -> Response:
            return await handler(_JsonInput(request))

        return decoded


def service_app(
    title: str,
    workers: Callable[[], AbstractAsyncContextManager[None]],
    readiness: ReadinessCheck,
    *,
    metrics_token: SecretStr | None,
    supervisor: Supervisor | None = None,
    **fastapi_options: Any,
) -> FastAPI:
    """An app whose lifespan runs ``workers``; /readyz is 503 with the reason when not ready.

    ``metrics_token`` comes from :func:`metrics_credential`; None leaves /metrics (and
    /tasks, the ``supervisor``'s report, when given) open, which only development settings
    allow.
    """

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with workers():
            yield

    app = FastAPI(title=title, lifespan=lifespan, **fastapi_options)
    app.router.route_class = JsonInputRoute
    metrics_endpoint = OperatorEndpoint(make_asgi_app(), metrics_token, realm="metrics")
    # /metrics itself and anything below it, with no redirect an unauthenticated client
    # could follow
    app.router.routes.append(Route("/metrics", endpoint=metrics_endpoint))
    app.mount("/metrics", metrics_endpoint)
    if supervisor is not None:
        tasks = OperatorEndpoint(_tasks_report(supervisor), metrics_token, realm="tasks")
        app.router.routes.append(Route("/tasks", endpoint=tasks, methods=["GET"]))

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


async def serve_app(app: FastAPI, settings: CommonSettings, *, port: int) -> None:
    """Run ``app`` on ``settings.bind_host`` until SIGINT or SIGTERM, then shut down
    gracefully; slow and surplus connections are closed (shared.http_server)."""
    metrics.initialise_http_close_reasons()
    bounds = ConnectionBounds.from_settings(settings)
    config = server_config(app, host=settings.bind_host, port=port, bounds=bounds)
    await uvicorn.Server(config).serve()
