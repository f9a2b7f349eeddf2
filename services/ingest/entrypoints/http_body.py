"""Reading an HTTP request body within bounds (ASGI ``receive``), and the address a
client is rate limited by. No policy here: the WriteGuard decides what is too much."""

from __future__ import annotations

import asyncio
import ipaddress

from starlette.types import Receive, Scope

# What is kept of a request that is refused before its body is read whole.
KEPT_PREFIX_BYTES = 4096


class Disconnected(Exception):
    """The client went away before its body was read."""


def client_key(scope: Scope) -> str:
    """The address a rate limit counts against: an IPv6 client by its /64 (one host
    holds a whole /64), an IPv4 client by its address."""
    client = scope.get("client")
    host = client[0] if client else "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return host


async def read_prefix(receive: Receive, limit: int, wait: float) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of the body, waiting at most ``wait`` seconds; and whether
    more was (or may have been) sent."""
    chunks: list[bytes] = []
    size, more = 0, True
    try:
        async with asyncio.timeout(wait):
            while more and size < limit:
                message = await receive()
                if message["type"] == "http.disconnect":
                    break
                chunk = message.get("body", b"")
                chunks.append(chunk)
                size += len(chunk)
                more = message.get("more_body", False)
    except TimeoutError:
        pass
    return b"".join(chunks)[:limit], more or size > limit


async def read_body(receive: Receive, cap: int, timeout: float) -> tuple[bytes, bool]:
    """The whole body, or its first bytes once it crosses ``cap`` (True: over the cap);
    TimeoutError when it takes longer than ``timeout`` seconds (a client trickling bytes
    holds a connection for no longer than that)."""
    chunks: list[bytes] = []
    size = 0
    async with asyncio.timeout(timeout):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Disconnected
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if size > cap:
                return b"".join(chunks)[:KEPT_PREFIX_BYTES], True
            if not message.get("more_body", False):
                return b"".join(chunks), False
