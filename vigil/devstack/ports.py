"""Finding free loopback ports and waiting for a server to listen."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable
from pathlib import Path


def _outside_the_ephemeral_range() -> range:
    """Ports outside the range the kernel takes outgoing connections' ports from
    (32768-60999 by default on Linux): one it hands out for a connection can never be the
    one a server chosen here is about to bind (a port from bind(0) can: the service then
    fails with "address already in use")."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        low, high = (int(n) for n in text.split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    if low >= 12000:
        return range(max(low - 12000, 10000), low)
    if high <= 64000:
        return range(high + 1, 65536)
    return range(10000, 65536)  # the whole range is ephemeral: nothing better to do


_CHOSEN_FROM = _outside_the_ephemeral_range()
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, outside the range the
    kernel takes outgoing connections' ports from, and not handed out before by this
    process."""
    for _ in range(200):
        port = random.choice(_CHOSEN_FROM)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free TCP port on 127.0.0.1 in {_CHOSEN_FROM}")


def is_listening(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a TCP connection to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(
    condition: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``condition`` until it holds; raise naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout:.0f}s")
        time.sleep(interval)
