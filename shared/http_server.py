"""The HTTP server every service runs its app in: uvicorn, with the bounds it lacks.

uvicorn closes an idle connection only after it has answered a request on it (its
keep-alive timeout). A client that opens a connection and sends nothing, or only part of a
request head, holds it for ever, and enough such clients exhaust the process's file
descriptors, and with them its database and broker connections. Here each connection must
send a whole request head within ``header_timeout`` seconds of opening, and of each answer
(a request body is the application's to bound: ingest answers a slow one 408); and a
service holds at most ``max_connections`` connections, closing any beyond at once.
Each closing is a log line and a count in ``vigil_http_connections_closed_total{reason}``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
import structlog
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from shared import metrics
from shared.settings import CommonSettings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ConnectionBounds:
    """How long a request head may take, and how many connections a service holds."""

    header_timeout: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> ConnectionBounds:
        return cls(settings.http_header_timeout_seconds, settings.http_max_connections)


class BoundedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for each request head and a cap on
    connections; :func:`bounded_protocol` makes one with the bounds set."""

    bounds: ClassVar[ConnectionBounds] = ConnectionBounds(10.0, 500)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.bounds.max_connections:
            self._close("connection-cap")
            return
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_arrived()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # a whole head arrived (or it is over)
            self._head_arrived()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._await_head()  # the next request's head, if any, has the same time

    def _await_head(self) -> None:
        self._head_arrived()
        self._head_deadline = self.loop.call_later(
            self.bounds.header_timeout, self._close, "header-timeout"
        )

    def _head_arrived(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _close(self, reason: str) -> None:
        self._head_deadline = None
        if self.transport.is_closing():
            return
        metrics.record_http_connection_closed(reason)
        log.warning("http.connection_closed", reason=reason, open=len(self.connections))
        self.transport.close()


def bounded_protocol(bounds: ConnectionBounds) -> type[BoundedH11Protocol]:
    """The protocol class uvicorn builds each connection with, bounded by ``bounds``."""
    return type("BoundedH11Protocol", (BoundedH11Protocol,), {"bounds": bounds})


def server_config(app: Any, *, host: str, port: int, bounds: ConnectionBounds) -> uvicorn.Config:
    """uvicorn's configuration for a service: its own logging, no access log, bounded."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        http=bounded_protocol(bounds),
    )
