"""OWASP API4:2023 Unrestricted Resource Consumption, on MLLP: every input is bounded in
size, time, connections and rate, and what is refused is still answered and kept.

Two ingest processes with small limits (real sockets, real PostgreSQL and broker): one for
size, connection cap, rate and frame time, one for the idle timeout (its short idle time
would otherwise close the connections the cap test holds open).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.support.mail import MailCatcher
from tests.support.mllp import (
    START,
    Ingest,
    MllpClient,
    ack_code,
    err_text,
    oru,
    running_ingest,
)
from tests.support.studies import LOOPBACK, Sources, copy_studies, from_loopback
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
MAX_BYTES = 16384
KEPT_BYTES = 4096
PEER_CAP = 3
BURST = 5


def control() -> str:
    return f"R{uuid.uuid4().hex[:12].upper()}"


def subject() -> str:
    return f"RC-{uuid.uuid4().hex[:6]}"


def with_rate_lab(shipped: Sources) -> Sources:
    rate_lab = {"id": "rate-lab", "hl7": [{"sending_facility": "RATE-LAB"}]}
    return [*from_loopback(shipped), {**rate_lab, "networks": [LOOPBACK]}]


@pytest.fixture(scope="module")
def limited(
    service_dsn: str,
    kafka_bootstrap: str,
    smtp_server: tuple[int, MailCatcher],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Ingest]:
    folder = Path(tmp_path_factory.mktemp("mllp-limits"))
    with running_ingest(
        folder / "logs",
        database_url=service_dsn,
        kafka_bootstrap=kafka_bootstrap,
        smtp_port=smtp_server[0],
        VIGIL_STUDY_DIR=str(copy_studies(folder / "studies", with_rate_lab)),
        VIGIL_MLLP_MAX_MESSAGE_BYTES=str(MAX_BYTES),
        VIGIL_MLLP_MAX_CONNECTIONS_PER_PEER=str(PEER_CAP),
        VIGIL_MLLP_RATE_PER_SECOND="0.001",  # refills nothing within a test
        VIGIL_MLLP_RATE_BURST=str(BURST),
        VIGIL_MLLP_FRAME_TIMEOUT_SECONDS="3",
    ) as ingest:
        yield ingest


@pytest.fixture(scope="module")
def impatient(
    service_dsn: str,
    kafka_bootstrap: str,
    smtp_server: tuple[int, MailCatcher],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Ingest]:
    with running_ingest(
        Path(tmp_path_factory.mktemp("mllp-idle")),
        database_url=service_dsn,
        kafka_bootstrap=kafka_bootstrap,
        smtp_port=smtp_server[0],
        VIGIL_MLLP_IDLE_TIMEOUT_SECONDS="2",
    ) as ingest:
        yield ingest


def local_label(client: MllpClient) -> str:
    host, port = client.writer.get_extra_info("sockname")[:2]
    return f"{host}:{port}"


async def test_an_oversized_message_gets_ar_and_its_first_bytes_are_kept(
    limited: Ingest, db: asyncpg.Connection
) -> None:
    message = oru("LIS", "PKUPH-LAB", control(), subject()) + b"\rNTE|1||" + b"x" * MAX_BYTES
    following = oru("LIS", "PKUPH-LAB", control(), subject())
    client = await MllpClient.connect(limited.mllp_port)
    try:
        ack = await client.exchange(message)
        next_ack = await client.exchange(following)  # the stream is still in step
    finally:
        await client.close()

    assert ack_code(ack) == "AR"
    assert f"largest accepted is {MAX_BYTES}" in err_text(ack)
    row = await db.fetchrow(
        "SELECT outcome, reason FROM received_messages WHERE raw = $1", message[:KEPT_BYTES]
    )
    assert row["outcome"] == "rejected"
    assert f"the message is {len(message)} bytes" in row["reason"]
    assert ack_code(next_ack) == "AA"
    assert (
        await limited.metric("vigil_ingest_rejected_total", format="mllp", reason="mllp-oversize")
        == 1
    )


async def test_connections_over_the_per_peer_cap_are_closed_and_counted(limited: Ingest) -> None:
    await eventually(
        lambda: no_open_connections(limited),
        what="the earlier tests' connections closed",
    )
    held = [await MllpClient.connect(limited.mllp_port) for _ in range(PEER_CAP)]
    try:
        for client in held:  # each is served
            ack = await client.exchange(oru("EDC", "PKUPH", control(), subject()))
            assert ack_code(ack) == "AA"
        extra = await MllpClient.connect(limited.mllp_port)
        try:
            assert await extra.closed_by_peer(), "a connection over the cap stayed open"
        finally:
            await extra.close()
        assert limited.logged("mllp.connection_refused", reason_code="peer-connection-cap")
        assert (
            await limited.metric(
                "vigil_mllp_connections_closed_total", reason="peer-connection-cap"
            )
            == 1
        )
    finally:
        for client in held:
            await client.close()
    await eventually(
        lambda: no_open_connections(limited),
        what="the held connections released",
    )
    again = await MllpClient.connect(limited.mllp_port)
    try:  # below the cap once more
        assert ack_code(await again.exchange(oru("EDC", "PKUPH", control(), subject()))) == "AA"
    finally:
        await again.close()


async def test_a_source_over_its_rate_limit_gets_ae_try_later_and_the_message_is_kept(
    limited: Ingest, db: asyncpg.Connection
) -> None:
    messages = [oru("LIS", "RATE-LAB", control(), subject()) for _ in range(BURST + 1)]
    client = await MllpClient.connect(limited.mllp_port)
    try:
        answers = [await client.exchange(message) for message in messages]
    finally:
        await client.close()

    assert [ack_code(ack) for ack in answers] == ["AA"] * BURST + ["AE"]
    assert "try again in" in err_text(answers[-1])
    row = await db.fetchrow(
        "SELECT outcome, reason FROM received_messages WHERE raw = $1", messages[-1]
    )
    assert row["outcome"] == "rejected"
    assert "rate limit of source rate-lab exceeded" in row["reason"]
    assert (
        await limited.metric(
            "vigil_ingest_rejected_total", format="mllp", reason="mllp-rate-limited"
        )
        == 1
    )


async def test_an_unauthenticated_peer_past_the_rate_is_answered_but_fills_no_storage(
    limited: Ingest, db: asyncpg.Connection
) -> None:
    messages = [oru("LIS", "PKUPH-LAB", control(), subject()) for _ in range(BURST + 1)]
    answers = []
    for message in messages:
        client = await MllpClient.connect(limited.mllp_port, from_host="127.0.0.2")
        try:
            answers.append(ack_code(await client.exchange(message)))
            assert await client.closed_by_peer()
        finally:
            await client.close()

    assert answers == ["AR"] * (BURST + 1)
    kept = await db.fetchval(
        "SELECT count(*) FROM received_messages WHERE raw = ANY($1::bytea[])", messages
    )
    assert kept == BURST


async def test_an_unfinished_frame_is_answered_ar_kept_and_closed_within_the_frame_timeout(
    limited: Ingest, db: asyncpg.Connection
) -> None:
    partial = oru("LIS", "PKUPH-LAB", control(), subject())[:-20]
    client = await MllpClient.connect(limited.mllp_port)
    try:
        client.writer.write(START + partial)  # and never 0x1C 0x0D
        await client.writer.drain()
        ack = await client.answer(timeout=60)
        closed = await client.closed_by_peer()
        peer = local_label(client)
    finally:
        await client.close()

    assert ack_code(ack) == "AR"
    assert "did not end" in err_text(ack)
    assert closed
    row = await db.fetchrow("SELECT outcome FROM received_messages WHERE raw = $1", partial)
    assert row["outcome"] == "rejected"
    assert limited.logged("mllp.frame_problem", peer=peer, reason_code="mllp-incomplete-frame")


async def test_a_connection_that_starts_no_message_is_closed_after_the_idle_timeout(
    impatient: Ingest,
) -> None:
    client = await MllpClient.connect(impatient.mllp_port)
    try:
        peer = local_label(client)
        assert await client.closed_by_peer(timeout=60), "the idle connection stayed open"
    finally:
        await client.close()

    assert impatient.logged("mllp.idle_timeout", peer=peer, reason_code="idle-timeout")
    assert await impatient.metric("vigil_mllp_connections_closed_total", reason="idle-timeout") >= 1


async def no_open_connections(ingest: Ingest) -> bool:
    return await ingest.metric("vigil_mllp_open_connections") == 0
