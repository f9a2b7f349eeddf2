"""Checks that held when issue 18's group commit was attacked from outside:
PostgreSQL restarted, and ingest killed -9, in the middle of a burst of HTTP and
MLLP senders (good, refused and invalid requests): every 202/AA is kept with its owed
events, nothing but 503/AE during the outage, every refusal kept as rejected."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.support import components
from tests.support.api_keys import issue_api_key
from tests.support.mail import MailCatcher
from tests.support.mllp import (
    MllpClient,
    ack_code,
    bursting_ingest,
    kept_and_owed,
    oru,
)
from tests.support.results import haemoglobin

pytestmark = pytest.mark.integration


async def run_burst(
    tmp_path: Path,
    kafka_bootstrap: str,
    smtp_port: int,
    fault: str,
    http_senders: int = 10,
    kinds: int = 5,
) -> tuple[dict[str, object], str]:
    cluster = await components.stoppable_cluster("vigil-test-i18-")
    key_a = await issue_api_key(cluster.dsn, source="lab-a")
    key_b = await issue_api_key(cluster.dsn, source="lab-b")
    # lab-b owns OWNED-1: lab-a's copies are refused (403), kept as rejected
    answers: dict[str, object] = {}
    faulted = asyncio.Event()
    stop = asyncio.Event()
    try:
        with bursting_ingest(
            tmp_path / "ingest",
            admin_dsn=cluster.dsn,
            kafka_bootstrap=kafka_bootstrap,
            smtp_port=smtp_port,
            connections=40,
        ) as ingest:
            async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as http:
                first = await http.post(
                    "/v1/lab-results",
                    json=haemoglobin("Z-1", "12.5", source_message_id="OWNED-1"),
                    headers=key_b.headers,
                )
                assert first.status_code == 202, first.text

                async def http_sender(number: int) -> None:
                    n = 0
                    after = 0
                    while after < 15 and not stop.is_set():
                        n += 1
                        tag = f"H-{number}-{n}"
                        kind = n % 5 if kinds == 5 else 3 + n % 2
                        if kind == 3:
                            body, key = (
                                haemoglobin("Z-1", "12.5", source_message_id="OWNED-1"),
                                key_a,
                            )  # 403
                            tag = f"F-{number}-{n}"
                        elif kind == 4:
                            tag = f"I-{number}-{n}"
                            body, key = haemoglobin("Z-2", "12.5", source_message_id=tag), key_a
                            body["loinc_code"] = "not a code"  # 422
                        else:
                            body, key = (
                                haemoglobin(f"Z-{number}", "12.5", source_message_id=tag),
                                key_a,
                            )
                        try:
                            response = await http.post(
                                "/v1/lab-results", json=body, headers=key.headers
                            )
                            answers[tag] = response.status_code
                        except httpx.HTTPError as error:
                            answers[tag] = f"transport {type(error).__name__}"
                            await asyncio.sleep(0.2)
                        after += faulted.is_set()

                async def mllp_sender(number: int) -> None:
                    client = None
                    n = 0
                    after = 0
                    while after < 15 and not stop.is_set():
                        n += 1
                        control = f"M-{number}-{n}"
                        try:
                            if client is None:
                                client = await MllpClient.connect(ingest.mllp_port)
                            ack = await client.exchange(
                                oru("LIS", "PKUPH-LAB", control, f"Q-{number}")
                            )
                            answers[control] = ack_code(ack)
                        except (OSError, asyncio.IncompleteReadError, TimeoutError) as error:
                            answers[control] = f"transport {type(error).__name__}"
                            client = None
                            await asyncio.sleep(0.2)
                        after += faulted.is_set()
                    if client is not None:
                        await client.close()

                async def fault_it() -> None:
                    while len(answers) < 150:  # noqa: ASYNC110 (counted by the senders)
                        await asyncio.sleep(0.01)
                    if fault == "postgres":
                        assert cluster.process is not None
                        cluster.process.send_signal(signal.SIGQUIT)
                        await asyncio.to_thread(cluster.process.wait)
                        faulted.set()
                        await asyncio.sleep(1.0)
                        await asyncio.to_thread(cluster.start)
                    else:
                        process = ingest.process.process
                        assert process is not None
                        process.send_signal(signal.SIGKILL)
                        await asyncio.to_thread(process.wait)
                        faulted.set()
                        await asyncio.sleep(0.5)
                        stop.set()

                await asyncio.gather(
                    fault_it(),
                    *(http_sender(n) for n in range(http_senders)),
                    *(mllp_sender(n) for n in range(6)),
                )
        if fault == "postgres" and not cluster.accepting():
            cluster.start()
        elif fault != "postgres":
            pass
        connection = await asyncpg.connect(cluster.dsn)
        try:
            kept, outbox = await kept_and_owed(connection)
        finally:
            await connection.close()
    finally:
        cluster.stop()

    # which control/tag each kept row is, and its outcome
    stored: Counter[tuple[str, str]] = Counter()
    for row in kept:
        body = row["body"]
        if row["channel"] == "mllp":
            tag = body.split("|")[9]
        else:
            tag = (
                body.split('"source_message_id":', 1)[1].split('"')[1]
                if "source_message_id" in body
                else "?"
            )
        stored[(tag, row["outcome"])] += 1
        if row["outcome"] == "accepted":
            assert row["event_ids"], (tag, row)
            assert set(row["event_ids"]) <= outbox, (tag, row)
    return {"answers": answers, "stored": stored}, cluster.dsn


def check(answers: dict[str, object], stored: Counter[tuple[str, str]]) -> list[str]:
    problems = []
    for tag, answer in answers.items():
        if answer in (202, "AA"):
            if stored[(tag, "accepted")] < 1:
                problems.append(f"{tag} answered {answer} but not kept as accepted")
        elif answer in (403, 422, "AR"):
            if tag.startswith("I-") and stored[(tag, "rejected")] < 1:
                problems.append(f"{tag} answered {answer} but not kept as rejected")
        elif answer in (503, "AE") or str(answer).startswith("transport"):
            pass
        else:
            problems.append(f"{tag} answered {answer}")
    forbidden = sum(1 for tag, a in answers.items() if tag.startswith("F-") and a == 403)
    if stored[("OWNED-1", "rejected")] < forbidden:
        problems.append(f"{forbidden} answered 403, {stored[('OWNED-1', 'rejected')]} kept")
    accepted_owned = stored[("OWNED-1", "accepted")]
    if accepted_owned != 1:
        problems.append(f"OWNED-1 kept accepted {accepted_owned} times")
    return problems


async def _burst_loses_nothing(
    tmp_path: Path, kafka_bootstrap: str, smtp_port: int, fault: str, **burst: int
) -> None:
    got, _ = await run_burst(tmp_path, kafka_bootstrap, smtp_port, fault, **burst)
    answers, stored = got["answers"], got["stored"]
    assert isinstance(answers, dict)
    assert isinstance(stored, Counter)
    problems = check(answers, stored)
    assert not problems, problems[:20]


async def test_postgres_restarted_mid_burst(
    tmp_path: Path, kafka_bootstrap: str, smtp_server: tuple[int, MailCatcher]
) -> None:
    await _burst_loses_nothing(tmp_path, kafka_bootstrap, smtp_server[0], "postgres")


async def test_ingest_killed_mid_burst(
    tmp_path: Path, kafka_bootstrap: str, smtp_server: tuple[int, MailCatcher]
) -> None:
    await _burst_loses_nothing(tmp_path, kafka_bootstrap, smtp_server[0], "kill")


async def test_postgres_restarted_under_refusals(
    tmp_path: Path, kafka_bootstrap: str, smtp_server: tuple[int, MailCatcher]
) -> None:
    """Half the senders refused (422, 403): a refusal whose connection died under it was
    answered 500 (see test_found_i18_refusal_outage.py); now 503 like every outage."""
    await _burst_loses_nothing(
        tmp_path, kafka_bootstrap, smtp_server[0], "postgres", http_senders=40, kinds=2
    )
