"""A TLS endpoint in front of a plain TCP server, for tests of clients' TLS settings.

The development broker (Tansu 0.6.0) has TLS flags that do not work (``--cert`` and
``--key`` refuse each other, and ``--cert`` alone serves plain TCP), so the tests put this
in front of it: a real TLS handshake (server certificate from a test CA, optionally a
required client certificate), then the Kafka protocol bytes passed through unchanged.
It runs in a thread of its own so that blocking test code cannot stall it.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager

from vigil.devstack.ports import free_port
from vigil.devstack.relay import Relay


@contextmanager
def tls_proxy(
    target_port: int, context: ssl.SSLContext, *, port: int | None = None
) -> Iterator[int]:
    """Listen with TLS on ``port`` (a free loopback port when None; yielded) and relay
    each connection to ``target_port``."""
    relay = Relay(port or free_port(), target_port, context=context)
    relay.open()
    try:
        yield relay.port
    finally:
        relay.shutdown()
