"""MLLP senders on many connections at once, kept by group commit: each message answered
with its own control id, none lost, and no AA for a message the database did not keep,
even when the database is killed mid-stream."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import asyncpg
import pytest

from tests.support import components
from tests.support.mail import MailCatcher
from tests.support.mllp import MllpClient, ack_code, bursting_ingest, oru
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

CONNECTIONS = 8


def message(connection: int, n: int) -> tuple[str, bytes]:
    control = f"GC-{connection}-{n}"
    return control, oru("LIS", "PKUPH-LAB", control, f"GC-{connection}-{n % 5}")


async def kept_controls(dsn: str) -> set[str]:
    """The control ids (MSH-10) of the messages kept as accepted."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT split_part(convert_from(raw, 'UTF8'), '|', 10) AS control "
            "FROM received_messages WHERE channel = 'mllp' AND outcome = 'accepted'"
        )
    finally:
        await connection.close()
    return {row["control"] for row in rows}


async def test_eight_connections_at_once_lose_nothing_and_each_ack_names_its_own_message(
    tmp_path: Path,
    postgres_dsn: str,
    kafka_bootstrap: str,
    smtp_server: tuple[int, MailCatcher],
) -> None:
    dsn = await components.create_database(postgres_dsn, "groupcommit")
    per_connection = 15
    with bursting_ingest(
        tmp_path / "ingest",
        admin_dsn=dsn,
        kafka_bootstrap=kafka_bootstrap,
        smtp_port=smtp_server[0],
        connections=CONNECTIONS + 2,
    ) as ingest:

        async def sender(number: int) -> list[tuple[str, str, str]]:
            client = await MllpClient.connect(ingest.mllp_port)
            answers = []
            try:
                for n in range(per_connection):
                    control, frame = message(number, n)
                    ack = await client.exchange(frame)
                    answers.append((control, str(ack.segment("MSA")[2]), ack_code(ack)))
            finally:
                await client.close()
            return answers

        answered = await asyncio.gather(*(sender(n) for n in range(CONNECTIONS)))

    for answers in answered:
        assert [(sent, code) for sent, _, code in answers] == [
            (sent, "AA") for sent, _, _ in answers
        ]
        assert [named for _, named, _ in answers] == [sent for sent, _, _ in answers]
    sent = {control for answers in answered for control, _, _ in answers}
    assert len(sent) == CONNECTIONS * per_connection
    assert await kept_controls(dsn) == sent
    await components.drop_database(postgres_dsn, dsn)


async def test_a_database_killed_mid_stream_leaves_no_aa_unkept(
    tmp_path: Path, kafka_bootstrap: str, smtp_server: tuple[int, MailCatcher]
) -> None:
    cluster = await components.stoppable_cluster("vigil-test-group-commit-")
    answers: dict[str, str] = {}
    killed = asyncio.Event()
    try:
        with bursting_ingest(
            tmp_path / "ingest",
            admin_dsn=cluster.dsn,
            kafka_bootstrap=kafka_bootstrap,
            smtp_port=smtp_server[0],
            connections=CONNECTIONS + 2,
        ) as ingest:

            async def sender(number: int) -> None:
                client = await MllpClient.connect(ingest.mllp_port)
                try:
                    n = 0
                    # until a few messages were answered after the kill on every connection
                    after_kill = 0
                    while after_kill < 3:
                        control, frame = message(number, n)
                        answers[control] = ack_code(await client.exchange(frame))
                        n += 1
                        after_kill += killed.is_set()
                finally:
                    await client.close()

            async def answered_some() -> bool:
                return len(answers) >= 40

            async def killer() -> None:
                await eventually(answered_some, what="messages answered before the kill")
                assert cluster.process is not None
                cluster.process.send_signal(signal.SIGQUIT)  # immediate: no shutdown work
                await asyncio.to_thread(cluster.process.wait)
                killed.set()

            await asyncio.gather(killer(), *(sender(n) for n in range(CONNECTIONS)))
        cluster.start()
        kept = await kept_controls(cluster.dsn)
    finally:
        cluster.stop()

    accepted = {control for control, code in answers.items() if code == "AA"}
    assert accepted, "nothing was accepted before the kill"
    assert accepted <= kept  # every AA'd message is in received_messages
    assert set(answers.values()) <= {"AA", "AE"}  # the rest were told to send again
    assert "AE" in answers.values()  # and some were sent while the database was away
