"""Escalation outside the notifier's own health: with the notifier stopped, a signal
nobody was told about reaches the watchdog's own channel, once, from the rules service
(real processes, real PostgreSQL, broker and SMTP servers)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from shared.events import CONTENT_TYPE, LabResultReported, wrap
from shared.events.topics import LAB_RESULTS
from tests.support import components
from tests.support.mail import running_smtp_server
from tests.support.services import METRICS_TOKEN, service_env, start_service
from tests.support.waiting import eventually
from vigil.devstack.ports import free_port

pytestmark = pytest.mark.integration
STUDY = "NCT05262686"
ON_CALL = "oncall@ops.vigil.example.org"

# /tasks, like /metrics, is for operators: it needs the bearer token
OPERATOR = {"Authorization": f"Bearer {METRICS_TOKEN}"}


async def publish_haemoglobin(bootstrap: str, subject_id: str, value: str) -> None:
    """A lab result straight onto the input topic, as a partner may send it."""
    payload = LabResultReported(
        study_id=STUDY,
        subject_id=subject_id,
        loinc_code="718-7",
        value=Decimal(value),
        unit="g/dL",
        collected_at=datetime(2026, 11, 20, 8, tzinfo=UTC),
        source_message_id=f"LAB-{uuid.uuid4().hex[:12]}",
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            LAB_RESULTS,
            wrap(payload, source="/tests/partner").to_json(),
            key=f"{STUDY}/{subject_id}".encode(),
            headers=[("content-type", CONTENT_TYPE.encode())],
        )
    finally:
        await producer.stop()


async def watchdog_steps(client: httpx.AsyncClient) -> int:
    tasks: dict[str, Any] = (await client.get("/tasks")).json()
    steps: int = next(t["steps"] for t in tasks["tasks"] if t["task"] == "watchdog")
    return steps


async def test_with_the_notifier_stopped_an_undelivered_signal_reaches_the_watchdog_once(
    tmp_path: Path, fresh_dsn: str
) -> None:
    db = await asyncpg.connect(fresh_dsn)
    with (
        components.tansu() as broker,
        running_smtp_server() as (notifier_smtp, notifier_mail),
        running_smtp_server() as (watchdog_smtp, watchdog_mail),
    ):
        port = free_port()
        env = service_env(
            database_url=components.as_service_role(fresh_dsn),
            kafka_bootstrap=broker.bootstrap,
            smtp_port=notifier_smtp,
            VIGIL_RULES_PORT=str(port),
            VIGIL_WATCHDOG_SMTP_URL=f"smtp://127.0.0.1:{watchdog_smtp}",
            VIGIL_WATCHDOG_EMAIL_TO=ON_CALL,
            VIGIL_WATCHDOG_UNDELIVERED_AFTER_SECONDS="3",
            VIGIL_WATCHDOG_POLL_SECONDS="0.5",
        )
        rules = start_service("safety_rules", "rules", port, env, tmp_path)  # no notifier
        try:
            subject_id = f"T-{uuid.uuid4().hex[:8]}"
            await publish_haemoglobin(broker.bootstrap, subject_id, "7.0")

            (mail,) = await asyncio.to_thread(watchdog_mail.wait_for, lambda m: True, timeout=60)

            signal_id = await db.fetchval(
                "SELECT payload->>'signal_id' FROM events WHERE type = $1 AND subject_id = $2",
                "org.vigil.safety_signal.raised.v1",
                subject_id,
            )
            assert mail.envelope_to == [ON_CALL]
            assert "1 safety signal(s) not delivered" in str(mail.message["Subject"])
            assert f"signal {signal_id}" in mail.body
            assert f"subject {subject_id}" in mail.body
            assert "rule anaemia-hb-le-9" in mail.body
            assert "g/dL" not in mail.body  # ids, subjects and rules only

            async def recorded() -> bool:
                count = await db.fetchval(
                    "SELECT count(*) FROM events WHERE stream_id = $1", f"watchdog-{signal_id}"
                )
                return bool(count == 1)

            # sent first, then recorded in the same transaction that held the report
            await eventually(recorded, timeout=30, what="the report in the audit log")

            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", timeout=10, headers=OPERATOR
            ) as c:
                seen = await watchdog_steps(c)

                async def three_more_rounds() -> bool:
                    return await watchdog_steps(c) >= seen + 3

                await eventually(three_more_rounds, timeout=60, what="three more rounds")
                metrics = (await c.get("/metrics/")).text

            assert len(watchdog_mail.received) == 1  # once per signal
            assert notifier_mail.received == []  # the notifier was never there
            age = next(
                float(line.split()[-1])
                for line in metrics.splitlines()
                if line.startswith("vigil_oldest_undelivered_signal_age_seconds ")
            )
            assert age >= 3
            assert 'vigil_watchdog_reports_total{channel="email"} 1.0' in metrics
        finally:
            rules.stop()
            await db.close()
