"""MLLP over real sockets for tests: a raw client (any framing, TLS, a chosen source
address) and an ingest process started with the MLLP settings a test needs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import hl7
import hl7.mllp
import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.components import as_service_role
from tests.support.services import METRICS_TOKEN, service_env, start_service
from vigil.devstack.ports import free_port
from vigil.devstack.supervisor import ManagedProcess

START = b"\x0b"
END = b"\x1c\x0d"


def hl7_message(*segments: str) -> bytes:
    return "\r".join(segments).encode()


def msh(application: str, facility: str, kind: str, control: str) -> str:
    return (
        f"MSH|^~\\&|{application}|{facility}|VIGIL|SPONSOR|20261120083000||{kind}|{control}|P|2.5.1"
    )


def oru(application: str, facility: str, control: str, subject: str, value: str = "13.1") -> bytes:
    return hl7_message(
        msh(application, facility, "ORU^R01^ORU_R01", control),
        f"PID|1||{subject}^^^NCT05262686^SS",
        "OBR|1|ORD1|FIL1|58410-2^CBC^LN|||20261120080000+0800",
        f"OBX|1|NM|718-7^Hemoglobin^LN||{value}|g/dL|12-16|N|||F",
    )


class MllpClient:
    """One connection; frames are written as given, answers read with a bounded wait."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(
        cls, port: int, *, tls: ssl.SSLContext | None = None, from_host: str | None = None
    ) -> MllpClient:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                "127.0.0.1",
                port,
                ssl=tls,
                server_hostname="localhost" if tls else None,
                local_addr=(from_host, 0) if from_host else None,
            ),
            timeout=30,
        )
        return cls(reader, writer)

    async def send(self, message: bytes, *, start: bytes = START, end: bytes = END) -> None:
        self.writer.write(start + message + end)
        await self.writer.drain()

    async def answer(self, timeout: float = 30) -> hl7.Message:
        """The next ACK; fails when the connection ends first."""
        block = await asyncio.wait_for(self.reader.readuntil(END), timeout=timeout)
        assert block.startswith(START), block[:20]
        return hl7.parse(block[1:-2].decode())

    async def exchange(self, message: bytes, **framing: bytes) -> hl7.Message:
        await self.send(message, **framing)
        return await self.answer()

    async def closed_by_peer(self, timeout: float = 30) -> bool:
        """Whether the server ends the connection within ``timeout`` (data still unread
        is drained first)."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except (ConnectionError, ssl.SSLError):
            return True
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), timeout=5)


async def exchange(port: int, message: str) -> hl7.Message:
    """One message over a new connection, with the hl7 package's own MLLP client (as a
    laboratory's interface engine would send it); the parsed ACK."""
    reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", port)
    try:
        writer.writeblock(message.encode())
        await writer.drain()
        return hl7.parse((await reader.readblock()).decode())
    finally:
        writer.close()


async def exchange_bytes(port: int, message: bytes) -> hl7.Message:
    """One message given as bytes (any character set, any framing inside) over a new
    connection; the parsed ACK."""
    client = await MllpClient.connect(port)
    try:
        return await client.exchange(message)
    finally:
        await client.close()


async def exchange_segments(port: int, frame: bytes) -> list[list[str]]:
    """One block (a message or a batch) over a new connection; the answer's segments,
    each split at its fields (a batch ACK is FHS/BHS, one ACK per message, BTS/FTS)."""
    client = await MllpClient.connect(port)
    try:
        await client.send(frame)
        block = await asyncio.wait_for(client.reader.readuntil(END), timeout=30)
    finally:
        await client.close()
    lines = block[1:-2].decode().replace("\n", "\r").split("\r")
    return [line.split("|") for line in lines if line]


def ack_code(ack: hl7.Message) -> str:
    return str(ack.segment("MSA")[1])


def err_location(ack: hl7.Message) -> str:
    return str(ack.segment("ERR")[2])


def err_text(ack: hl7.Message) -> str:
    return str(ack.segment("ERR")[8])


@dataclass(frozen=True)
class Ingest:
    """An ingest process of a test."""

    process: ManagedProcess
    url: str
    mllp_port: int
    log_file: Path

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_file.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
        return lines

    def logged(self, event: str, **fields: object) -> list[dict[str, Any]]:
        return [
            line
            for line in self.log_lines()
            if line.get("event") == event and all(line.get(k) == v for k, v in fields.items())
        ]

    async def metric(self, name: str, **labels: str) -> float:
        async with httpx.AsyncClient(timeout=30, follow_redirects=True) as client:
            response = await client.get(
                f"{self.url}/metrics/", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
            )
            response.raise_for_status()
            text = response.text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return sample.value
        return 0.0


def _unthrottled(connections: int) -> dict[str, str]:
    return {
        "VIGIL_MLLP_RATE_PER_SECOND": "100000",
        "VIGIL_MLLP_RATE_BURST": "100000",
        "VIGIL_MLLP_MAX_CONNECTIONS_PER_PEER": str(connections),
        "VIGIL_INGEST_RATE_PER_SOURCE": "100000",
        "VIGIL_INGEST_RATE_UNAUTHENTICATED_PER_CLIENT": "100000",
        "VIGIL_HTTP_MAX_CONNECTIONS": "1000",
    }


async def kept_and_owed(connection: asyncpg.Connection) -> tuple[list[asyncpg.Record], set[Any]]:
    """Every kept message (its body as text, outcome, source, event ids), in arrival order,
    and the event ids ingest owes the audit log."""
    kept = await connection.fetch(
        "SELECT channel, convert_from(raw, 'UTF8') AS body, outcome, principal_source, "
        "event_ids FROM received_messages ORDER BY received_at"
    )
    owed = {row["event_id"] for row in await connection.fetch("SELECT event_id FROM ingest_outbox")}
    return kept, owed


def bursting_ingest(
    folder: Path, *, admin_dsn: str, kafka_bootstrap: str, smtp_port: int, connections: int = 8
) -> AbstractContextManager[Ingest]:
    """Ingest alone on ``admin_dsn``'s database (as the services' role), its rate limits out
    of the way of a test that sends bursts on purpose (``connections`` MLLP connections
    from one peer at once)."""
    return running_ingest(
        folder,
        database_url=as_service_role(admin_dsn),
        kafka_bootstrap=kafka_bootstrap,
        smtp_port=smtp_port,
        **_unthrottled(connections),
    )


@contextmanager
def running_ingest(
    folder: Path,
    *,
    database_url: str,
    kafka_bootstrap: str,
    smtp_port: int,
    **settings: str,
) -> Iterator[Ingest]:
    """Ingest alone (no rules, no notifier), with ``settings`` over the tests' defaults."""
    port, mllp_port = free_port(), free_port()
    env = service_env(
        database_url=database_url,
        kafka_bootstrap=kafka_bootstrap,
        smtp_port=smtp_port,
        VIGIL_INGEST_PORT=str(port),
        VIGIL_MLLP_PORT=str(mllp_port),
        **settings,
    )
    folder.mkdir(parents=True, exist_ok=True)
    process = start_service("ingest", "ingest", port, env, folder)
    try:
        yield Ingest(process, f"http://127.0.0.1:{port}", mllp_port, folder / "ingest.log")
    finally:
        process.stop()
