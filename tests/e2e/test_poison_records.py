"""A poison record delays its partition by seconds and never stops it; what ingest
acknowledges is judged, and what it cannot judge it refuses at the door.

The door (the payload types, shared/events/values.py) and the rules service's own parsing
now refuse every value known to break the event store, so no value sent here can reach the
store and fail there any more. To prove what the consumer does when a record fails anyway
(a store refusal or a bug nobody has met yet), this module's database refuses, with a
trigger, any event whose source_message_id starts with ``POISON-``: PostgreSQL raises
SQLSTATE 22008 (a date/time value out of range), as it would for such a value. Everything
else is the real stack: a private broker, a private database, the rules service and
ingest as processes.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.events import CONTENT_TYPE, LabResultReported, wrap
from shared.events.topics import DEAD_LETTERS, LAB_RESULTS
from tests.support import components
from tests.support.api_keys import IssuedKey, issue_api_key
from tests.support.components import as_service_role, create_database, drop_database
from tests.support.services import METRICS_TOKEN, service_env, start_service
from tests.support.waiting import eventually
from vigil.devstack.ports import free_port
from vigil.devstack.supervisor import ManagedProcess

pytestmark = pytest.mark.integration

ANAEMIA = "anaemia-hb-le-9"
REFUSE_POISON = """
CREATE FUNCTION test_refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.payload_json LIKE '%"source_message_id":"POISON-%' THEN
        RAISE EXCEPTION 'date/time field value out of range' USING ERRCODE = '22008';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER test_refuse_poison BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION test_refuse_poison();
"""


@dataclass
class Stack:
    dsn: str
    bootstrap: str
    ingest_url: str
    rules_url: str
    rules: ManagedProcess
    ingest: ManagedProcess
    log_dir: Path
    key: IssuedKey


@pytest.fixture(scope="module")
async def stack(
    postgres_dsn: str, smtp_server: tuple[int, object], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    dsn = await create_database(postgres_dsn, prefix="poison")
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(REFUSE_POISON)
    finally:
        await admin.close()
    log_dir = tmp_path_factory.mktemp("poison-logs")
    with components.tansu() as broker:
        ports = {"rules": free_port(), "ingest": free_port()}
        env = service_env(
            database_url=as_service_role(dsn),
            kafka_bootstrap=broker.bootstrap,
            smtp_port=smtp_server[0],
            VIGIL_RULES_PORT=str(ports["rules"]),
            VIGIL_INGEST_PORT=str(ports["ingest"]),
            VIGIL_INGEST_REDRIVE_AFTER_SECONDS="5",
            VIGIL_AUDIT_ANCHOR_FILE=str(log_dir / "anchors.jsonl"),
        )
        key = await issue_api_key(dsn)
        rules = start_service("safety_rules", "rules", ports["rules"], env, log_dir)
        ingest = start_service("ingest", "ingest", ports["ingest"], env, log_dir)
        try:
            yield Stack(
                dsn,
                broker.bootstrap,
                f"http://127.0.0.1:{ports['ingest']}",
                f"http://127.0.0.1:{ports['rules']}",
                rules,
                ingest,
                log_dir,
                key,
            )
        finally:
            ingest.stop()
            rules.stop()
    await drop_database(postgres_dsn, dsn)


async def post(stack: Stack, path: str, body: Any) -> httpx.Response:
    """Every write to ingest goes through here (the one place to add a credential)."""
    async with httpx.AsyncClient(base_url=stack.ingest_url, timeout=30) as client:
        return await client.post(path, json=body, headers=stack.key.headers)


def haemoglobin(subject: str, value: str, message_id: str) -> bytes:
    payload = LabResultReported(
        study_id="NCT05262686",
        subject_id=subject,
        loinc_code="718-7",
        value=Decimal(value),
        unit="g/dL",
        collected_at=datetime(2026, 11, 1, 8, tzinfo=UTC),
        source_message_id=message_id,
    )
    return wrap(payload, source="/tests/partner").to_json()


async def publish(bootstrap: str, values: list[bytes]) -> None:
    """A partner publishing straight onto the input topic, all on one partition."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(
                LAB_RESULTS,
                value,
                key=b"one-partition",
                headers=[("content-type", CONTENT_TYPE.encode())],
            )
    finally:
        await producer.stop()


async def alerted(connection: asyncpg.Connection, subjects: list[str]) -> set[str]:
    rows = await connection.fetch(
        "SELECT DISTINCT subject_id FROM events WHERE type = 'org.vigil.safety_signal.raised.v1' "
        "AND payload->>'rule_id' = $1 AND subject_id = ANY($2::text[])",
        ANAEMIA,
        subjects,
    )
    return {row["subject_id"] for row in rows}


async def rejections_of(connection: asyncpg.Connection, raw: bytes) -> list[dict[str, Any]]:
    rows = await connection.fetch(
        "SELECT payload_json FROM events WHERE stream_id = 'rejected-input' ORDER BY position"
    )
    payloads = [json.loads(row["payload_json"]) for row in rows]
    digest = hashlib.sha256(raw).hexdigest()
    return [p for p in payloads if p.get("raw_sha256") == digest]


async def poison_metric(stack: Stack) -> float:
    async with httpx.AsyncClient(
        base_url=stack.rules_url,
        timeout=10,
        follow_redirects=True,
        headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
    ) as client:
        text = (await client.get("/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("vigil_rules_poison_records_total{")
    )


async def test_a_poison_record_is_dead_lettered_and_every_result_around_it_is_judged(
    stack: Stack,
) -> None:
    run = uuid.uuid4().hex[:6]
    subjects = [f"PZ{run}-{n}" for n in range(8)]
    good = [haemoglobin(subject, "7.0", f"GOOD-{subject}") for subject in subjects]
    poison = haemoglobin(f"PZ{run}-X", "7.0", f"POISON-{run}")
    poison_id = uuid.UUID(json.loads(poison)["id"])
    dead = AIOKafkaConsumer(
        DEAD_LETTERS,
        bootstrap_servers=stack.bootstrap,
        group_id=f"test-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
    )
    await dead.start()
    connection = await asyncpg.connect(stack.dsn)
    try:
        await publish(stack.bootstrap, [*good[:4], poison, *good[4:]])

        # every good result is stored and judged: 8 of 8 fresh subjects with Hb 7.0 alert
        await eventually(
            lambda: _all(alerted(connection, subjects), len(subjects)),
            timeout=60,
            what="an anaemia signal for every subject around the poison record",
        )
        # the poison record: marked dead-lettered, recorded as rejected input, never stored
        marked = await eventually(
            lambda: connection.fetchrow(
                "SELECT * FROM dead_lettered_events WHERE event_id = $1", poison_id
            ),
            what="the poison record marked dead-lettered",
        )
        assert "poison record" in marked["reason"]
        assert "22008" in marked["reason"]
        (rejection,) = await rejections_of(connection, poison)
        assert rejection["reason"] == marked["reason"]
        assert str(rejection["origin"]).startswith(f"{LAB_RESULTS}/")
        assert (
            await connection.fetchval(
                "SELECT type FROM events WHERE event_id = $1", marked["rejection_id"]
            )
            == "org.vigil.input.rejected.v2"
        )
        # the record itself is kept in the receipt store, which the rejection refers to
        kept = await connection.fetchval(
            "SELECT raw FROM received_messages WHERE receipt_id = $1",
            uuid.UUID(rejection["receipt_id"]),
        )
        assert bytes(kept) == poison
        assert (
            await connection.fetchval("SELECT count(*) FROM events WHERE event_id = $1", poison_id)
            == 0
        )
        # the reason names the failure, never a value of the record
        for value in (f"PZ{run}-X", "7.0", "7", "POISON"):
            assert value not in marked["reason"].replace("poison record", "")

        async def poison_on_dead_letters() -> dict[str, bytes] | None:
            batches = await dead.getmany(timeout_ms=500)
            digest = hashlib.sha256(poison).hexdigest()
            for record in (r for records in batches.values() for r in records):
                if json.loads(record.value or b"{}").get("raw_sha256") == digest:
                    return dict(record.headers)
            return None

        headers = await eventually(poison_on_dead_letters, what="poison on the dead-letter topic")
        assert headers["vigil-reason"].decode() == marked["reason"]
        # the partition moved past it: its stored position is past the poison record
        partition, offset = str(rejection["origin"]).rsplit("/", 1)[1].split("@")
        position = await connection.fetchval(
            "SELECT next_offset FROM consumer_positions WHERE topic = $1 AND partition = $2",
            LAB_RESULTS,
            int(partition),
        )
        assert position is not None
        assert position > int(offset)
        assert await poison_metric(stack) == 1

        # a restart does not bring it back: the consumer starts past it
        stack.rules.stop()
        stack.rules.start()
        late = f"PZ{run}-late"
        await publish(stack.bootstrap, [haemoglobin(late, "7.0", f"GOOD-{late}")])
        await eventually(
            lambda: _all(alerted(connection, [late]), 1),
            timeout=60,
            what="a result after the restart judged",
        )
        assert len(await rejections_of(connection, poison)) == 1
        assert await poison_metric(stack) == 0
    finally:
        await connection.close()
        await dead.stop()


async def test_ingest_never_redrives_an_event_the_rules_dead_lettered(stack: Stack) -> None:
    run = uuid.uuid4().hex[:6]
    body = {
        "subject_id": f"PI{run}",
        "loinc_code": "718-7",
        "value": "7.0",
        "unit": "g/dL",
        "collected_at": "2026-11-01T08:00:00+00:00",
        "source_message_id": f"POISON-{run}",
    }
    response = await post(stack, "/v1/lab-results", body)
    assert response.status_code == 202  # a valid result: only the store (trigger) refuses it
    (event_id,) = (uuid.UUID(i) for i in response.json()["event_ids"])
    connection = await asyncpg.connect(stack.dsn)
    try:
        await eventually(
            lambda: connection.fetchval(
                "SELECT count(*) = 1 FROM dead_lettered_events WHERE event_id = $1", event_id
            ),
            timeout=60,
            what="the event dead-lettered by the rules service",
        )
        # ingest counts it settled: the owed event leaves its outbox
        await eventually(
            lambda: connection.fetchval(
                "SELECT count(*) = 0 FROM ingest_outbox WHERE event_id = $1", event_id
            ),
            timeout=30,
            what="ingest's outbox row settled",
        )
        rejected_before = await connection.fetchval(
            "SELECT count(*) FROM events WHERE stream_id = 'rejected-input' "
            "AND payload->>'reason' LIKE 'poison record%' AND payload->>'raw_text' LIKE $1",
            f"%POISON-{run}%",
        )
        stack.ingest.stop()
        stack.rules.stop()
        stack.ingest.start()
        stack.rules.start()
        # a result sent after the restarts is judged: ingest's re-drive and the rules'
        # consumer have been running meanwhile; the dead-lettered event did not come back
        sentinel = f"PS{run}"
        response = await post(
            stack,
            "/v1/lab-results",
            {**body, "subject_id": sentinel, "source_message_id": f"GOOD-{run}"},
        )
        assert response.status_code == 202
        await eventually(
            lambda: _all(alerted(connection, [sentinel]), 1), timeout=60, what="sentinel judged"
        )
        rejected_after = await connection.fetchval(
            "SELECT count(*) FROM events WHERE stream_id = 'rejected-input' "
            "AND payload->>'reason' LIKE 'poison record%' AND payload->>'raw_text' LIKE $1",
            f"%POISON-{run}%",
        )
        assert rejected_after == rejected_before
        assert (
            await connection.fetchval(
                "SELECT count(*) FROM ingest_outbox WHERE event_id = $1", event_id
            )
            == 0
        )
    finally:
        await connection.close()


@pytest.mark.parametrize(
    ("field", "value"),
    [("collected_at", "9999-12-31T23:00:00-14:00"), ("value", "1E+400")],
)
async def test_ingest_answers_422_naming_the_field_for_a_value_the_store_cannot_hold(
    stack: Stack, field: str, value: str
) -> None:
    body = {
        "subject_id": "01-003",
        "loinc_code": "718-7",
        "value": "8.6",
        "unit": "g/dL",
        "collected_at": "2026-11-01T08:00:00+00:00",
        "source_message_id": f"DOOR-{uuid.uuid4().hex[:6]}",
        field: value,
    }
    response = await post(stack, "/v1/lab-results", body)
    assert response.status_code == 422
    problem = response.json()
    assert [error["field"] for error in problem["errors"]] == [field]
    assert value not in response.text


@pytest.mark.parametrize(
    ("element", "change"),
    [
        ("Observation.effective[x]", {"effectiveDateTime": "9999-12-31T23:00:00-14:00"}),
        (
            "Observation.value[x]",
            {"valueQuantity": {"value": 1e300, "unit": "g/dL", "code": "g/dL"}},
        ),
    ],
)
async def test_fhir_answers_422_naming_the_element_for_a_value_the_store_cannot_hold(
    stack: Stack, element: str, change: dict[str, Any]
) -> None:
    resource = {
        "resourceType": "Observation",
        "id": f"obs-{uuid.uuid4().hex[:6]}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
        "subject": {"reference": "Patient/01-003"},
        "effectiveDateTime": "2026-11-20T08:00:00+08:00",
        "valueQuantity": {"value": 8.6, "unit": "g/dL", "code": "g/dL"},
        **change,
    }
    response = await post(stack, "/fhir/r4/Observation", resource)
    assert response.status_code == 422
    outcome = response.json()
    assert [issue["expression"] for issue in outcome["issue"]] == [[element]]
    assert "9999" not in response.text
    assert "1e+300" not in response.text.lower()


async def _all(found: Any, expected: int) -> bool:
    return len(await found) == expected
