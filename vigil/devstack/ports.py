"""Finding free loopback ports and waiting for a server to listen."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable

# Below Linux's ephemeral range (32768-60999 by default): a port the kernel hands out for
# an outgoing connection can never be the one a server chosen here is about to bind (a
# port from bind(0) can: a service then fails with "address already in use").
_CHOSEN_FROM = range(20000, 32768)
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
