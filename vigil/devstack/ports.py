"""Finding free loopback ports and waiting for a server to listen."""

from __future__ import annotations

import os
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


PORT_SHARE_VARIABLE = "VIGIL_DEVSTACK_PORT_SHARE"


def share_of(ports: range, share: str | None) -> range:
    """The ``k``-th of ``n`` equal slices of ``ports`` for a share ``"k/n"`` (0 <= k < n):
    processes that start servers side by side (the test suite's workers, and what each
    of them starts) each pick from their own slice, so none binds a port another found
    free a moment before. All of ``ports`` without a share, or with one that is not
    ``"k/n"``."""
    try:
        index, count = (int(n) for n in (share or "").split("/"))
    except ValueError:
        return ports
    if not 0 <= index < count or count > len(ports):
        return ports
    size = len(ports) // count
    return ports[index * size : (index + 1) * size]


_CHOSEN_FROM = _outside_the_ephemeral_range()
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, outside the range the
    kernel takes outgoing connections' ports from, in this process's share of that range
    (VIGIL_DEVSTACK_PORT_SHARE, see :func:`share_of`), and not handed out before by this
    process."""
    chosen_from = share_of(_CHOSEN_FROM, os.environ.get(PORT_SHARE_VARIABLE))
    for _ in range(200):
        port = random.choice(chosen_from)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free TCP port on 127.0.0.1 in {chosen_from}")


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
