"""A record on the signals topic that is no Vigil event is dead-lettered by the notifier,
through the real broker: kept in the receipt store, a reference to it on the dead-letter
topic with a reason that names the problem and no value, and the notifier stays healthy."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.events.topics import DEAD_LETTERS, SAFETY_SIGNALS
from tests.support import components
from tests.support.components import as_service_role
from tests.support.mail import running_smtp_server
from tests.support.services import METRICS_TOKEN, service_env, start_service
from tests.support.waiting import eventually
from vigil.devstack.ports import free_port

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class RunningNotifier:
    url: str
    bootstrap: str


@pytest.fixture
def notifier_alone(fresh_dsn: str, tmp_path: Path) -> Iterator[RunningNotifier]:
    """`vigil notifier` as a process, with a broker and a database of its own."""
    port = free_port()
    with components.kafka() as bootstrap, running_smtp_server() as (smtp_port, _):
        env = service_env(
            database_url=as_service_role(fresh_dsn),
            kafka_bootstrap=bootstrap,
            smtp_port=smtp_port,
            VIGIL_NOTIFIER_PORT=str(port),
        )
        process = start_service("notifier", "notifier", port, env, tmp_path)
        try:
            yield RunningNotifier(f"http://127.0.0.1:{port}", bootstrap)
        finally:
            process.stop()


async def test_a_record_on_the_signals_topic_that_is_no_event_is_dead_lettered(
    notifier_alone: RunningNotifier, fresh_dsn: str
) -> None:
    name = f"Jane Doe {uuid.uuid4().hex[:6]}"  # what a partner's record might carry
    garbage = json.dumps({"type": "not.a.vigil.event", "subject_name": name}).encode()
    dead = AIOKafkaConsumer(
        DEAD_LETTERS,
        bootstrap_servers=notifier_alone.bootstrap,
        group_id=f"test-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=notifier_alone.bootstrap)
    await dead.start()
    await producer.start()
    connection = await asyncpg.connect(fresh_dsn)
    try:
        await producer.send_and_wait(SAFETY_SIGNALS, garbage)
        digest = hashlib.sha256(garbage).hexdigest()

        async def garbage_on_dead_letters() -> tuple[dict[str, bytes], bytes] | None:
            batches = await dead.getmany(timeout_ms=500)
            for record in (r for records in batches.values() for r in records):
                if json.loads(record.value or b"{}").get("raw_sha256") == digest:
                    return dict(record.headers), record.value or b""
            return None

        headers, value = await eventually(
            garbage_on_dead_letters, timeout=60, what="the garbage on the dead-letter topic"
        )
        reason = headers["vigil-reason"].decode()
        assert reason.startswith("not a valid Vigil event: ")
        assert headers["vigil-rejected-by"] == b"vigil-notifier"
        assert headers["vigil-origin"].decode().startswith(f"{SAFETY_SIGNALS}/")
        # the reason and the dead letter name the problem, never a value of the record
        assert name not in reason
        assert name.encode() not in value
        # the record itself is kept in the receipt store, which the dead letter refers to
        receipt_id = uuid.UUID(json.loads(value)["receipt_id"])
        kept = await connection.fetchval(
            "SELECT raw FROM received_messages WHERE receipt_id = $1", receipt_id
        )
        assert bytes(kept) == garbage

        # still healthy: ready, and the signal consumer is running
        async with httpx.AsyncClient(base_url=notifier_alone.url, timeout=30) as client:
            assert (await client.get("/readyz")).status_code == 200
            tasks = (
                await client.get("/tasks", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
            ).json()["tasks"]
        consumer = next(task for task in tasks if task["task"] == "signal-consumer")
        assert consumer["state"] == "running"
    finally:
        await connection.close()
        await producer.stop()
        await dead.stop()
