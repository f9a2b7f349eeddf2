"""The MLLP listener: connections in, bounded, authenticated, each frame answered.

Per connection, in order: the per-peer connection cap (checked before any byte is read),
the TLS handshake (when TLS is configured; bounded by the frame timeout), the
authentication (mllp_auth), then frames until the peer closes, stays idle past the idle
timeout, or leaves a frame unfinished. Every refusal and every close ingest decides on is
a log line and a count in ``vigil_mllp_connections_closed_total``.

Reading is paused from the moment the connection is made until those checks pass, so not
one byte reaches the stream reader before the TLS layer is in place (``start_tls`` on a
stream would otherwise lose a ClientHello already read).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import Counter
from dataclasses import dataclass
from typing import Any, cast

import structlog

from services.ingest import metrics
from services.ingest.domain.sources import SourceRegistry
from services.ingest.entrypoints.mllp import MllpHandler, Peer
from services.ingest.entrypoints.mllp_auth import Refused, authenticate
from services.ingest.entrypoints.mllp_frames import START_BLOCK, Frame, FrameReader, IdleTimeout
from services.ingest.entrypoints.mllp_tls import presented_certificate
from services.settings import VigilSettings

log = structlog.get_logger(__name__)
# an oversized or unfinished message keeps this much of its beginning as its receipt
KEPT_PREFIX_BYTES = 4096
_END = bytes([0x1C, 0x0D])


@dataclass(frozen=True)
class MllpLimits:
    max_message_bytes: int
    idle_timeout: float
    frame_timeout: float
    max_connections_per_peer: int

    @classmethod
    def from_settings(cls, settings: VigilSettings) -> MllpLimits:
        return cls(
            max_message_bytes=settings.mllp_max_message_bytes,
            idle_timeout=settings.mllp_idle_timeout_seconds,
            frame_timeout=settings.mllp_frame_timeout_seconds,
            max_connections_per_peer=settings.mllp_max_connections_per_peer,
        )


class MllpListener:
    """Accepts MLLP connections and serves each in its own task."""

    def __init__(
        self,
        handler: MllpHandler,
        *,
        registry: SourceRegistry,
        tls: ssl.SSLContext | None,
        limits: MllpLimits,
        development: bool,
    ) -> None:
        self._handler = handler
        self._registry = registry
        self._tls = tls
        self._limits = limits
        self._development = development
        self._open: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        metrics.initialise_mllp_close_reasons()
        self._server = await asyncio.start_server(self._connected, host, port)
        log.info("mllp.listening", host=host, port=port, tls=self._tls is not None)

    async def close(self) -> None:
        """Stop listening and end every open connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Called inside ``connection_made``, before any data is read: pause reading, apply
        the per-peer cap, and hand the connection to its task."""
        cast(asyncio.Transport, writer.transport).pause_reading()
        peername: Any = writer.get_extra_info("peername") or ("unknown", 0)
        host, label = str(peername[0]), f"{peername[0]}:{peername[1]}"
        if self._open[host] >= self._limits.max_connections_per_peer:
            log.warning(
                "mllp.connection_refused",
                peer=label,
                reason_code="peer-connection-cap",
                open=self._open[host],
            )
            metrics.record_mllp_connection_closed("peer-connection-cap")
            writer.transport.abort()
            return
        self._open[host] += 1
        metrics.MLLP_OPEN_CONNECTIONS.inc()
        task = asyncio.create_task(self._serve(reader, writer, host, label))
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._finished(done, host))

    def _finished(self, task: asyncio.Task[None], host: str) -> None:
        self._tasks.discard(task)
        self._open[host] -= 1
        if self._open[host] <= 0:
            del self._open[host]
        metrics.MLLP_OPEN_CONNECTIONS.dec()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, label: str
    ) -> None:
        try:
            if not await self._secure(writer, label):
                return
            certificate = presented_certificate(writer.get_extra_info("ssl_object"))
            auth = authenticate(
                self._registry,
                host=host,
                certificate=certificate,
                development=self._development,
            )
            if isinstance(auth, Refused):
                log.warning("mllp.unauthenticated", peer=label, reason_code=auth.reason_code)
            else:
                log.info("mllp.connected", peer=label, source=auth.label)
            await self._exchange(reader, writer, Peer(label, host, auth))
        except (ConnectionError, OSError) as error:
            log.info("mllp.connection_lost", peer=label, error=type(error).__name__)
        except Exception as error:  # a fault of ours: this connection ends, never the listener
            log.error("mllp.connection_failed", peer=label, error=type(error).__name__)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._limits.frame_timeout):
                    await writer.wait_closed()

    async def _secure(self, writer: asyncio.StreamWriter, label: str) -> bool:
        """The TLS handshake, when TLS is on; False (logged, counted) when it fails."""
        if self._tls is None:
            cast(asyncio.Transport, writer.transport).resume_reading()
            return True
        try:
            await writer.start_tls(self._tls, ssl_handshake_timeout=self._limits.frame_timeout)
        except (ssl.SSLError, ConnectionError, OSError, TimeoutError) as error:
            log.warning(
                "mllp.tls_handshake_failed",
                peer=label,
                reason_code="tls-handshake-failed",
                error=getattr(error, "reason", None) or type(error).__name__,
            )
            metrics.record_mllp_connection_closed("tls-handshake-failed")
            return False
        return True

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer
    ) -> None:
        """Frames until the peer leaves, idles, or breaks the framing."""
        frames = FrameReader(
            reader,
            max_bytes=self._limits.max_message_bytes,
            keep_bytes=KEPT_PREFIX_BYTES,
            frame_timeout=self._limits.frame_timeout,
        )
        while True:
            try:
                frame = await frames.next_frame(self._limits.idle_timeout)
            except IdleTimeout:
                log.info(
                    "mllp.idle_timeout",
                    peer=peer.label,
                    reason_code="idle-timeout",
                    seconds=self._limits.idle_timeout,
                )
                metrics.record_mllp_connection_closed("idle-timeout")
                return
            if frame is None:
                return
            self._log_framing(frame, peer)
            answer = await self._handler.handle(frame, peer)
            async with asyncio.timeout(self._limits.frame_timeout):
                writer.write(bytes([START_BLOCK]) + answer.ack + _END)
                await writer.drain()
            if answer.close:
                reason = "unauthenticated" if isinstance(peer.auth, Refused) else "incomplete-frame"
                log.info("mllp.closed", peer=peer.label, reason_code=reason)
                metrics.record_mllp_connection_closed(reason)
                return

    @staticmethod
    def _log_framing(frame: Frame, peer: Peer) -> None:
        if frame.discarded:
            log.warning(
                "mllp.bytes_outside_frame",
                peer=peer.label,
                reason_code="mllp-framing",
                bytes=frame.discarded,
            )
        if frame.missing_final_cr:
            log.warning(
                "mllp.frame_without_final_cr",
                peer=peer.label,
                reason_code="mllp-framing",
                detail="the frame ended with 0x1C but no 0x0D; answered all the same",
            )
        if frame.problem is not None:
            log.warning(
                "mllp.frame_problem",
                peer=peer.label,
                reason_code=f"mllp-{frame.problem}",
                bytes=frame.size,
            )


def _warn_about_unreachable_sources(
    registry: SourceRegistry, tls: ssl.SSLContext | None, development: bool
) -> None:
    """Say at start-up which sources cannot connect as configured (a typo in a network or
    a missing client CA would otherwise show only as refused connections)."""
    asks_for_certificates = tls is not None and tls.verify_mode != ssl.CERT_NONE
    for source in registry.sources:
        if source.certificates and not asks_for_certificates:
            log.warning(
                "mllp.source_cannot_connect",
                source=source.id,
                detail="it lists certificates but VIGIL_MLLP_TLS_CLIENT_CA_FILE is not set",
            )
        elif not source.certificates and not source.networks and not development:
            log.warning(
                "mllp.source_cannot_connect",
                source=source.id,
                detail="it lists neither networks nor certificates in sources.yaml",
            )


async def start_mllp_server(
    handler: MllpHandler,
    *,
    host: str,
    port: int,
    registry: SourceRegistry,
    tls: ssl.SSLContext | None,
    limits: MllpLimits,
    development: bool,
) -> MllpListener:
    _warn_about_unreachable_sources(registry, tls, development)
    listener = MllpListener(
        handler, registry=registry, tls=tls, limits=limits, development=development
    )
    await listener.start(host, port)
    return listener
