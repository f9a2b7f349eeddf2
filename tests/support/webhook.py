"""A real local HTTP receiver for webhooks that verifies Vigil's signature (README snippet)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from tests.support.waiting import eventually
from vigil.devstack.ports import free_port


def verify(secret: bytes, headers: dict[str, str], body: bytes, tolerance: int = 300) -> bool:
    """The receiver's check, as the README shows it."""
    timestamp = headers.get("x-vigil-timestamp", "")
    signature = headers.get("x-vigil-signature", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
        return False  # missing, or too old: a replay
    expected = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(signature, f"v1={expected}")


@dataclass
class WebhookReceiver:
    """Keeps the verified deliveries; answers 401 to anything not signed right."""

    secret: bytes
    url: str = ""
    accepted: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0
    headers: list[dict[str, str]] = field(default_factory=list)
    # set: answer every request with this status and the request's own body (a failing
    # receiver that echoes what it got)
    echo_with_status: int | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if self.echo_with_status is not None:
            await send({"type": "http.response.start", "status": self.echo_with_status,
                        "headers": [(b"content-type", b"application/json")]})  # fmt: skip
            await send({"type": "http.response.body", "body": body})
            return
        if verify(self.secret, headers, body):
            self.accepted.append(json.loads(body))
            self.headers.append(headers)
            status = 204
        else:
            self.refused += 1
            status = 401
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@asynccontextmanager
async def webhook_receiver(secret: bytes) -> AsyncIterator[WebhookReceiver]:
    """A receiver served by uvicorn on a free loopback port, in this event loop."""
    port = free_port()
    receiver = WebhookReceiver(secret, url=f"http://127.0.0.1:{port}/hook")
    server = uvicorn.Server(
        uvicorn.Config(receiver, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    await eventually(lambda: asyncio.sleep(0, server.started), timeout=10, what="receiver up")
    try:
        yield receiver
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def trickling_receiver() -> AsyncIterator[tuple[str, list[float]]]:
    """A receiver that answers 200 at once and then sends its body one byte a second, for
    ever: each read is quick, the answer never ends. Yields its URL and the (monotonic)
    time of each request."""
    hits: list[float] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits.append(time.monotonic())
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            while True:
                writer.write(b"1\r\n \r\n")
                await writer.drain()
                await asyncio.sleep(1)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    port = free_port()
    server = await asyncio.start_server(answer, "127.0.0.1", port)
    try:
        yield f"http://127.0.0.1:{port}/hook", hits
    finally:
        server.close()
