"""A background task of a running service that dies is restarted, counted and shown: the
notifier as a real process, a real PostgreSQL and broker, a real SMTP server."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from shared.events import CONTENT_TYPE
from shared.events.topics import DEAD_LETTERS, SAFETY_SIGNALS
from tests.support import components
from tests.support.mail import running_smtp_server
from tests.support.notifier import raised
from tests.support.services import METRICS_TOKEN, service_env, start_service
from tests.support.waiting import eventually
from vigil.devstack.ports import free_port

pytestmark = pytest.mark.integration
STUDY = "NCT05262686"

# /tasks, like /metrics, is for operators: it needs the bearer token
OPERATOR = {"Authorization": f"Bearer {METRICS_TOKEN}"}


def signal(subject_id: str, **changes: Any) -> bytes:
    """A signal of the real study, as the rules service publishes it."""
    return raised("PKUPH-01", study_id=STUDY, subject_id=subject_id, **changes).to_json()


async def publish(bootstrap: str, topic: str, value: bytes, key: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            topic, value, key=key, headers=[("content-type", CONTENT_TYPE.encode())]
        )
    finally:
        await producer.stop()


def task(tasks: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(t for t in tasks["tasks"] if t["task"] == name)
    return found


async def test_a_delivery_task_killed_by_an_unexpected_error_is_restarted_and_readyz_shows_it(
    tmp_path: Path, fresh_dsn: str
) -> None:
    admin = await asyncpg.connect(fresh_dsn)
    with components.tansu() as broker, running_smtp_server() as (smtp_port, mailbox):
        port = free_port()
        env = service_env(
            database_url=components.as_service_role(fresh_dsn),
            kafka_bootstrap=broker.bootstrap,
            smtp_port=smtp_port,
            VIGIL_NOTIFIER_PORT=str(port),
            VIGIL_TASK_RESTART_MAX_SECONDS="1",
        )
        notifier = start_service("notifier", "notifier", port, env, tmp_path)
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", timeout=10, headers=OPERATOR
            ) as c:
                assert (await c.get("/readyz")).status_code == 200

                # the service role loses a privilege the worker needs: every claim fails
                # with an error that is no outage, and the worker's task dies of it
                await admin.execute("REVOKE UPDATE ON deliveries FROM vigil_app")

                async def down() -> dict[str, Any] | None:
                    response = await c.get("/readyz")
                    return response.json() if response.status_code == 503 else None

                not_ready = await eventually(down, timeout=60, what="/readyz 503")
                assert "task delivery-worker is down" in not_ready["reason"]
                assert "InsufficientPrivilegeError" in not_ready["reason"]
                dead = task((await c.get("/tasks")).json(), "delivery-worker")
                assert dead["state"] == "restarting"
                assert dead["restarts"] >= 1
                assert dead["last_error"].startswith("InsufficientPrivilegeError at")

                await admin.execute("GRANT UPDATE ON deliveries TO vigil_app")

                async def ready() -> bool:
                    return (await c.get("/readyz")).status_code == 200

                await eventually(ready, timeout=60, what="/readyz 200 again")
                back = task((await c.get("/tasks")).json(), "delivery-worker")
                assert back["state"] == "running"
                assert back["restarts"] >= dead["restarts"]
                metrics = (await c.get("/metrics/")).text
                assert (
                    'vigil_task_restarts_total{service="notifier",task="delivery-worker"}'
                    in metrics
                )
                assert 'vigil_task_up{service="notifier",task="delivery-worker"} 1.0' in metrics

                # and the restarted worker delivers
                subject_id = f"T-{uuid.uuid4().hex[:8]}"
                await publish(
                    broker.bootstrap,
                    SAFETY_SIGNALS,
                    signal(subject_id),
                    f"{STUDY}/{subject_id}".encode(),
                )
                await asyncio.to_thread(
                    mailbox.wait_for,
                    lambda m: f"subject {subject_id}:" in str(m.message["Subject"]),
                    timeout=60,
                )
        finally:
            notifier.stop()
            await admin.close()
    log = (tmp_path / "notifier.log").read_text()
    assert '"event": "supervisor.task_died"' in log
    assert "InsufficientPrivilegeError" in log


async def dead_letters(bootstrap: str, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        DEAD_LETTERS, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(60):
            while len(records) < count:
                batches = await consumer.getmany(timeout_ms=500)
                records += [r for rs in batches.values() for r in rs]
    finally:
        await consumer.stop()
    return records


async def test_a_signal_the_notifier_cannot_handle_is_dead_lettered_and_the_next_is_sent(
    tmp_path: Path, fresh_dsn: str
) -> None:
    admin = await asyncpg.connect(fresh_dsn)
    # a fault that hits one kind of signal only: a finding is held for a digest
    await admin.execute("REVOKE INSERT ON digest_items FROM vigil_app")
    with components.tansu() as broker, running_smtp_server() as (smtp_port, mailbox):
        port = free_port()
        env = service_env(
            database_url=components.as_service_role(fresh_dsn),
            kafka_bootstrap=broker.bootstrap,
            smtp_port=smtp_port,
            VIGIL_NOTIFIER_PORT=str(port),
        )
        notifier = start_service("notifier", "notifier", port, env, tmp_path)
        try:
            finding, urgent = f"T-{uuid.uuid4().hex[:8]}", f"T-{uuid.uuid4().hex[:8]}"
            for value in (
                signal(finding, severity="finding", rule_id="ferritin-low"),
                signal(urgent),
            ):
                await publish(broker.bootstrap, SAFETY_SIGNALS, value, b"same-partition")

            await asyncio.to_thread(
                mailbox.wait_for,
                lambda m: f"subject {urgent}:" in str(m.message["Subject"]),
                timeout=60,
            )
            (dead,) = await dead_letters(broker.bootstrap, 1)
            headers = {key: value.decode() for key, value in dead.headers}
            # the dead letter refers to the signal kept verbatim in the receipt store
            reference = json.loads(dead.value or b"")
            kept = await admin.fetchval(
                "SELECT raw FROM received_messages WHERE receipt_id = $1",
                uuid.UUID(reference["receipt_id"]),
            )
            assert finding.encode() in bytes(kept)
            assert finding.encode() not in (dead.value or b"")
            assert headers["vigil-reason"].startswith(
                "the notifier could not handle it: InsufficientPrivilegeError at"
            )
            assert headers["vigil-rejected-by"] == "vigil-notifier"
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                assert (await client.get("/readyz")).status_code == 200
        finally:
            notifier.stop()
            await admin.close()
