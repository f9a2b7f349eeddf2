"""A TLS endpoint in front of a plain TCP server, for tests of clients' TLS settings.

The development broker (Tansu 0.6.0) has TLS flags that do not work (``--cert`` and
``--key`` refuse each other, and ``--cert`` alone serves plain TCP), so the tests put this
in front of it: a real TLS handshake (server certificate from a test CA, optionally a
required client certificate), then the Kafka protocol bytes passed through unchanged.
It runs in a thread of its own so that blocking test code cannot stall it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from vigil.devstack.ports import free_port


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError, ssl.SSLError):
        pass
    finally:
        writer.close()


@contextmanager
def tls_proxy(
    target_port: int, context: ssl.SSLContext, *, port: int | None = None
) -> Iterator[int]:
    """Listen with TLS on ``port`` (a free loopback port when None; yielded) and relay
    each connection to ``target_port``."""
    port = port or free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stopping: asyncio.Event | None = None

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, upstream[1]), _pipe(upstream[0], writer))

    async def serve() -> None:
        nonlocal stopping
        stopping = asyncio.Event()
        server = await asyncio.start_server(relay, "127.0.0.1", port, ssl=context)
        started.set()
        async with server:
            await stopping.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    if not started.wait(timeout=10):
        raise RuntimeError("the TLS proxy did not start")
    try:
        yield port
    finally:
        assert stopping is not None
        loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout=10)
        with contextlib.suppress(RuntimeError):
            loop.close()
