"""Faults while running: the broker down, the database down, a poison message."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.events import CONTENT_TYPE, LabResultReported, wrap
from shared.events.dead_letters import RECEIPT_REFERENCE
from shared.events.topics import DEAD_LETTERS, LAB_RESULTS
from tests.support import components
from tests.support.api_keys import issue_api_key
from tests.support.services import RunningServices, service_env, start_service
from tests.support.waiting import eventually
from vigil.devstack.ports import free_port

pytestmark = pytest.mark.integration


def lab_event(subject: str, value: str, day: int = 0) -> bytes:
    """A haemoglobin result collected ``day`` days after 2026-11-01."""
    payload = LabResultReported(
        study_id="NCT05262686",
        subject_id=subject,
        loinc_code="718-7",
        value=Decimal(value),
        unit="g/dL",
        collected_at=datetime(2026, 11, 1, 8, tzinfo=UTC) + timedelta(days=day),
        source_message_id=f"direct-{uuid.uuid4().hex}",
    )
    return wrap(payload, source="/tests/partner").to_json()


async def publish_direct(bootstrap: str, topic: str, values: list[bytes], key: bytes) -> None:
    """A partner publishing straight onto an input topic."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(
                topic, value, key=key, headers=[("content-type", CONTENT_TYPE.encode())]
            )
    finally:
        await producer.stop()


async def test_broker_down_gives_503_and_nothing_is_claimed(
    tmp_path: Path, smtp_server: tuple[int, object], service_dsn: str, postgres_dsn: str
) -> None:
    key = await issue_api_key(postgres_dsn)
    with components.tansu() as broker:
        port = free_port()
        env = service_env(
            database_url=service_dsn,
            kafka_bootstrap=broker.bootstrap,
            smtp_port=smtp_server[0],
            VIGIL_INGEST_PORT=str(port),
            VIGIL_KAFKA_PUBLISH_TIMEOUT_SECONDS="3",
        )
        ingest = start_service("ingest", "ingest", port, env, tmp_path)
        try:
            body = {
                "subject_id": "S-503",
                "site_id": "PKUPH-01",
                "sex": "M",
                "birth_date": "1970-01-01",
            }
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", timeout=30, headers=key.headers
            ) as c:
                assert (await c.post("/v1/subjects", json=body)).status_code == 202
                broker.stop()

                response = await c.post("/v1/subjects", json=body)

                assert response.status_code == 503
                assert response.headers["content-type"] == "application/problem+json"
                assert "send the request again" in response.json()["detail"].lower()
                assert (await c.get("/readyz")).status_code == 503
        finally:
            ingest.stop()


async def test_broker_restart_loses_nothing_that_was_acknowledged(
    tmp_path: Path, smtp_server: tuple[int, object], fresh_dsn: str
) -> None:
    """The dev broker forgets everything on restart; the durable receipt does not."""
    dsn = fresh_dsn
    key = await issue_api_key(dsn)
    with components.tansu() as broker:
        ports = {"rules": free_port(), "ingest": free_port()}
        env = service_env(
            database_url=components.as_service_role(dsn),
            kafka_bootstrap=broker.bootstrap,
            smtp_port=smtp_server[0],
            VIGIL_RULES_PORT=str(ports["rules"]),
            VIGIL_INGEST_PORT=str(ports["ingest"]),
            VIGIL_INGEST_REDRIVE_AFTER_SECONDS="2",
            VIGIL_KAFKA_PUBLISH_TIMEOUT_SECONDS="3",
        )
        ingest = start_service("ingest", "ingest", ports["ingest"], env, tmp_path)
        rules = start_service("safety_rules", "rules", ports["rules"], env, tmp_path)
        acknowledged: list[str] = []
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{ports['ingest']}", timeout=30, headers=key.headers
            ) as client:

                async def send(subject: str, values: list[str]) -> None:
                    body = [
                        {
                            "subject_id": subject,
                            "loinc_code": "718-7",
                            "value": value,
                            "unit": "g/dL",
                            "collected_at": f"2026-11-0{n + 1}T08:00:00+00:00",
                            "source_message_id": f"{subject}-{n}",
                        }
                        for n, value in enumerate(values)
                    ]
                    for _ in range(60):  # a sender retries until acknowledged
                        response = await client.post("/v1/lab-results", json=body)
                        if response.status_code == 202:
                            acknowledged.extend(response.json()["event_ids"])
                            return
                        assert response.status_code == 503, response.text
                        await asyncio.sleep(0.5)
                    raise AssertionError("never acknowledged")

                await send("R-1", ["12.0", "8.0"])
                rules.stop()  # what follows sits in the broker, not yet in the audit log
                await send("R-2", ["12.5", "7.9", "13.0"])
                await send("R-3", ["11.0"])
                broker.stop()
                broker.start()  # ...and is forgotten here
                await send("R-4", ["12.2", "8.8"])
                rules.start()

                connection = await asyncpg.connect(dsn)
                try:
                    await eventually(
                        lambda: connection.fetchval(
                            "SELECT count(*) = $2 FROM events WHERE event_id = ANY($1::uuid[])",
                            acknowledged,
                            len(set(acknowledged)),
                        ),
                        timeout=60,
                        what="every acknowledged event in the audit log",
                    )
                    stored = await connection.fetchval(
                        "SELECT count(*) FROM events WHERE event_id = ANY($1::uuid[])",
                        acknowledged,
                    )
                    assert stored == len(set(acknowledged)) == 8
                    receipts = await connection.fetchval(
                        "SELECT count(*) FROM received_messages WHERE outcome = 'accepted'"
                    )
                    assert receipts >= 4
                finally:
                    await connection.close()
            redriven = await asyncio.to_thread((tmp_path / "ingest.log").read_text)
            assert "ingest.redriven" in redriven  # the re-drive, not luck, brought them back
        finally:
            rules.stop()
            ingest.stop()


async def test_database_outage_loses_and_duplicates_nothing(
    tmp_path: Path, smtp_server: tuple[int, object]
) -> None:
    cluster = await components.stoppable_cluster("vigil-test-outage-")
    with components.tansu() as broker:
        port = free_port()
        env = service_env(
            database_url=components.as_service_role(cluster.dsn),
            kafka_bootstrap=broker.bootstrap,
            smtp_port=smtp_server[0],
            VIGIL_RULES_PORT=str(port),
        )
        rules = start_service("safety_rules", "rules", port, env, tmp_path)
        try:
            cluster.stop()
            values = [
                lab_event("S-OUT", v, day)
                for day, v in enumerate(("13.0", "8.1", "12.2", "7.4", "11.9"))
            ]
            await publish_direct(broker.bootstrap, LAB_RESULTS, values, b"NCT05262686/S-OUT")
            log = tmp_path / "safety_rules.log"
            await eventually(
                lambda: _contains(log, "rules.batch_failed"), what="batch failing on the outage"
            )

            cluster.start()

            connection = await asyncpg.connect(cluster.dsn)
            try:
                await eventually(
                    lambda: connection.fetchval(
                        "SELECT count(*) = 5 FROM events WHERE type LIKE '%lab_result%'"
                    ),
                    what="all five results stored",
                )
                # 8.1 opens an episode that 12.2 resolves; 7.4 opens another that 11.9
                # resolves; the subject is not enrolled, which is flagged once
                await eventually(
                    lambda: connection.fetchval(
                        "SELECT count(*) = 5 FROM outbox WHERE published_at IS NOT NULL"
                    ),
                    what="two episodes and the unknown-subject flag published",
                )
                types = await connection.fetch(
                    "SELECT type FROM events WHERE type NOT LIKE '%lab_result%' ORDER BY position"
                )
                # (in one batch or several, depending on when the database came back)
                assert sorted(t["type"].split(".")[-2] for t in types) == [
                    "issue_raised",
                    "raised",
                    "raised",
                    "resolved",
                    "resolved",
                ]
            finally:
                await connection.close()
        finally:
            rules.stop()
            cluster.stop()


async def _contains(path: Path, text: str) -> bool:
    return await asyncio.to_thread(lambda: path.exists() and text in path.read_text())


async def test_poison_message_is_kept_and_dead_lettered_by_reference_and_the_rest_flows(
    services: RunningServices, kafka_bootstrap: str, postgres_dsn: str
) -> None:
    subject = f"T-{uuid.uuid4().hex[:8]}"
    poison = b'{"specversion": "1.0", "type": "not json at the end'
    good = lab_event(subject, "12.0")
    digest = hashlib.sha256(poison).hexdigest()
    dead = AIOKafkaConsumer(
        DEAD_LETTERS,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"test-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
    )
    await dead.start()
    try:
        await publish_direct(kafka_bootstrap, LAB_RESULTS, [poison, good], subject.encode())

        async def poison_arrived() -> tuple[dict[str, Any], dict[str, bytes]] | None:
            batches = await dead.getmany(timeout_ms=500)
            for record in (r for records in batches.values() for r in records):
                assert record.value != poison, "the raw record travelled to the dead letters"
                headers = dict(record.headers)
                if headers.get("content-type") != RECEIPT_REFERENCE.encode():
                    continue
                reference: dict[str, Any] = json.loads(record.value)
                if reference["raw_sha256"] == digest:
                    return reference, headers
            return None

        reference, headers = await eventually(poison_arrived, what="the poison's dead letter")
        assert b"not a valid Vigil event" in headers["vigil-reason"]
        assert headers["vigil-origin"].startswith(LAB_RESULTS.encode())
        assert (reference["raw_size"], reference["channel"]) == (len(poison), "kafka")
    finally:
        await dead.stop()
    good_id = json.loads(good)["id"]
    connection = await asyncpg.connect(postgres_dsn)
    try:
        await eventually(
            lambda: connection.fetchval(
                "SELECT count(*) = 1 FROM events WHERE event_id = $1", uuid.UUID(good_id)
            ),
            what="the good event after the poison stored",
        )
        kept = await connection.fetchrow(
            "SELECT * FROM received_messages WHERE receipt_id = $1",
            uuid.UUID(reference["receipt_id"]),
        )
        assert bytes(kept["raw"]) == poison
        assert (kept["channel"], kept["outcome"]) == ("kafka", "rejected")
        assert kept["source"].startswith(LAB_RESULTS)

        (owed,) = kept["event_ids"]
        stored = await eventually(
            lambda: connection.fetchval(
                "SELECT payload::text FROM events WHERE event_id = $1", owed
            ),
            what="the poison's rejection in the rejected-input stream",
        )
        rejection = json.loads(stored)
        assert rejection["receipt_id"] == reference["receipt_id"]
        assert rejection["raw_sha256"] == digest
        assert "not a valid Vigil event" in str(rejection["reason"])
        assert str(rejection["origin"]).startswith(LAB_RESULTS)
        assert "raw_text" not in rejection
    finally:
        await connection.close()


async def test_a_refusal_that_cannot_be_kept_is_answered_503_and_kept_when_sent_again(
    tmp_path: Path, smtp_server: tuple[int, object]
) -> None:
    """A 4xx tells the sender not to send again; it is given only once the refused message
    is kept, so a refusal is never the only trace of what was sent."""
    cluster = await components.stoppable_cluster("vigil-test-refusal-outage-")
    key = await issue_api_key(cluster.dsn)
    with components.tansu() as broker:
        port = free_port()
        env = service_env(
            database_url=components.as_service_role(cluster.dsn),
            kafka_bootstrap=broker.bootstrap,
            smtp_port=smtp_server[0],
            VIGIL_INGEST_PORT=str(port),
        )
        ingest = start_service("ingest", "ingest", port, env, tmp_path)
        invalid = {"subject_id": "01-003", "loinc_code": "718-7", "value": "eight"}
        fhir = {"resourceType": "Observation", "status": "final"}
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
                cluster.stop()
                during = [
                    await c.post("/v1/lab-results", json=invalid, headers=key.headers),
                    await c.post(
                        "/fhir/r4/Observation",
                        content=json.dumps(fhir),
                        headers={**key.headers, "content-type": "application/fhir+json"},
                    ),
                    await c.post("/v1/lab-results", json=invalid),  # no key
                ]
                assert [r.status_code for r in during] == [503, 503, 503]

                cluster.start()

                async def refused_once_kept() -> int | None:
                    answer = await c.post("/v1/lab-results", json=invalid, headers=key.headers)
                    return None if answer.status_code == 503 else answer.status_code

                status = await eventually(
                    refused_once_kept, what="the refusal answered once it can be kept"
                )
            assert status == 422
            connection = await asyncpg.connect(cluster.dsn)
            try:
                kept = await connection.fetchval(
                    "SELECT count(*) FROM received_messages WHERE outcome = 'rejected'"
                )
            finally:
                await connection.close()
            assert kept == 1  # the resend, kept once it could be
        finally:
            ingest.stop()
            cluster.stop()
