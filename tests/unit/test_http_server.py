"""Every service's HTTP server bounds its connections: a request head must arrive in time
(after the connection opens, and after each answer), and a service holds at most so many
connections. A trivial app in uvicorn on loopback, through raw sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from shared.http_server import ConnectionBounds, server_config
from tests.support.waiting import closed_by_server, eventually
from vigil.devstack.ports import (
    PORT_SHARE_VARIABLE,
    _outside_the_ephemeral_range,
    free_port,
    share_of,
)

TIMEOUT = 0.4
REQUEST = b"GET / HTTP/1.1\r\nHost: vigil\r\n\r\n"
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@asynccontextmanager
async def serving(max_connections: int = 50) -> AsyncIterator[int]:
    port = free_port()
    bounds = ConnectionBounds(header_timeout=TIMEOUT, max_connections=max_connections)
    server = uvicorn.Server(server_config(app, host="127.0.0.1", port=port, bounds=bounds))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: asyncio.sleep(0, server.started), timeout=10, what="serving")
    try:
        yield port
    finally:
        server.should_exit = True
        await task


async def answer(connection: Connection) -> bytes:
    reader, _ = connection
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
        return head + await reader.readexactly(2)


async def test_a_connection_that_sends_nothing_is_closed() -> None:
    async with serving() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await closed_by_server(reader, TIMEOUT * 5)
        writer.close()


async def test_a_connection_that_sends_part_of_a_head_is_closed() -> None:
    async with serving() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: vigil\r\n")
        assert await closed_by_server(reader, TIMEOUT * 5)
        writer.close()


async def test_a_whole_head_in_time_is_answered_however_long_its_body_takes() -> None:
    async with serving() as port:
        connection = await asyncio.open_connection("127.0.0.1", port)
        connection[1].write(b"POST / HTTP/1.1\r\nHost: vigil\r\nContent-Length: 2\r\n\r\n")
        await asyncio.sleep(TIMEOUT * 2)  # the body is the application's to bound
        connection[1].write(b"{}")
        assert (await answer(connection)).startswith(b"HTTP/1.1 200")
        connection[1].close()


async def test_the_next_request_on_a_kept_connection_has_the_same_time() -> None:
    async with serving() as port:
        connection = await asyncio.open_connection("127.0.0.1", port)
        connection[1].write(REQUEST)
        assert (await answer(connection)).startswith(b"HTTP/1.1 200")
        connection[1].write(b"GET / HTTP/1.1\r\n")  # and no more
        assert await closed_by_server(connection[0], TIMEOUT * 5)
        connection[1].close()


async def test_connections_beyond_the_cap_are_closed_at_once() -> None:
    async with serving(max_connections=2) as port:
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await closed_by_server(reader, TIMEOUT / 2)
        writer.close()
        held[0][1].write(REQUEST)  # those held are served
        assert (await answer(held[0])).startswith(b"HTTP/1.1 200")
        for _, held_writer in held:
            held_writer.close()


def test_free_ports_are_below_the_kernels_outgoing_range_and_never_handed_out_twice() -> None:
    """A port from bind(0) is in the range outgoing connections take theirs from, so one
    could take it before the service binds it ("address already in use", seen in the suite)."""
    low, _high = (
        int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    )
    ports = [free_port() for _ in range(50)]

    assert len(set(ports)) == len(ports)
    assert all(port < low for port in ports)


@pytest.mark.parametrize(
    ("share", "expected"),
    [
        ("0/4", range(20000, 23000)),
        ("3/4", range(29000, 32000)),
        ("1/3", range(24000, 28000)),
        (None, range(20000, 32000)),
        ("", range(20000, 32000)),
        ("4/4", range(20000, 32000)),
        ("-1/4", range(20000, 32000)),
        ("1/0", range(20000, 32000)),
        ("gw1", range(20000, 32000)),
    ],
)
def test_each_share_picks_ports_from_its_own_slice(share: str | None, expected: range) -> None:
    """Found with four test workers: two took the same free port a moment apart."""
    assert share_of(range(20000, 32000), share) == expected


def test_free_ports_stay_in_this_process_share(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PORT_SHARE_VARIABLE, "2/5")
    whole = _outside_the_ephemeral_range()
    mine = share_of(whole, "2/5")
    ports = [free_port() for _ in range(20)]
    assert all(port in mine for port in ports)
