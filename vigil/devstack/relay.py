"""A TCP relay on a loopback port, opened once and shut down, in a thread of its own.

It passes bytes through unchanged (optionally behind a TLS handshake), so that a test or
the soak can stand in front of a server: to put TLS before a broker that cannot serve it,
or to keep clients away from a restarted broker until it is ready for them
(:class:`vigil.devstack.tansu.GatedTansuBroker`). Its own thread and event loop keep
blocking callers from stalling it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError, ssl.SSLError):
        pass
    finally:
        writer.close()


class Relay:
    """Listens on 127.0.0.1:``port`` once open and relays each connection to
    127.0.0.1:``target_port``; shut down, it refuses connections (nothing listens) and has
    cut the ones it relayed."""

    def __init__(self, port: int, target_port: int, *, context: ssl.SSLContext | None = None):
        self.port = port
        self.target_port = target_port
        self._context = context
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def _call(self, work: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout)

    def open(self) -> None:
        self._call(self._open())

    def shutdown(self) -> None:
        """Closed for good (connections refused, relayed ones cut): its thread ends."""
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        with contextlib.suppress(RuntimeError):
            self._loop.close()

    async def _open(self) -> None:
        self._server = await asyncio.start_server(
            self._relay, "127.0.0.1", self.port, ssl=self._context
        )

    async def _close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
        except OSError:
            writer.close()
            return
        self._writers |= {writer, upstream_writer}
        try:
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        finally:
            self._writers -= {writer, upstream_writer}
