"""Every input is answered in time, below 500, and kept; a poison record never stops its
partition; every input is bounded, slow clients included (README; docs/security.md API4,
API10). Findings of an outside review, through the real interfaces: HTTP and MLLP
sockets, the broker, and the database read as the schema owner to see what was kept.

Deeply nested JSON: 10 kB of ``[`` is deeper than Python's json module recurses (about
1,000 levels); it answered 500 on the JSON API and FHIR, "try again" on MLLP, and stopped
the rules service's partition, because keeping the refusal decoded it again to find its
study (shared.json_input now decodes every input with a bounded depth).

Slow clients: a connection that sends nothing, or part of a request head, was held for
ever (shared.http_server now closes it after VIGIL_HTTP_HEADER_TIMEOUT_SECONDS, and holds
at most VIGIL_HTTP_MAX_CONNECTIONS).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from shared.events.topics import DEAD_LETTERS, LAB_RESULTS
from tests.support import components
from tests.support.api_keys import IssuedKey, issue_api_key
from tests.support.components import as_service_role, create_database, drop_database
from tests.support.mail import MailCatcher
from tests.support.mllp import MllpClient, ack_code
from tests.support.results import haemoglobin, new_subject_id
from tests.support.services import (
    PrivateIngest,
    RunningServices,
    private_ingest,
    service_env,
    start_service,
)
from tests.support.waiting import closed_by_server, eventually
from vigil.devstack.ports import free_port
from vigil.devstack.supervisor import ManagedProcess

pytestmark = pytest.mark.integration

FHIR = {"content-type": "application/fhir+json"}
RAISED = "org.vigil.safety_signal.raised.v1"
# 5,000 nested JSON arrays: 10 kB, far below every body cap, deeper than Python's json
# module recurses
NESTED = b"[" * 5000 + b"]" * 5000
# 100,000 arrays opened and never closed
UNBALANCED = b"[" * 100_000
HEADER_TIMEOUT = 2.0
MAX_CONNECTIONS = 6


async def now(db: asyncpg.Connection) -> datetime:
    moment: datetime = await db.fetchval("SELECT clock_timestamp()")
    return moment


async def kept_since(db: asyncpg.Connection, since: datetime, channel: str, prefix: bytes) -> int:
    """Receipts kept since ``since`` on ``channel`` whose raw bytes begin with ``prefix``."""
    count: int = await db.fetchval(
        """SELECT count(*) FROM received_messages
           WHERE received_at >= $1 AND channel = $2
             AND substring(raw FROM 1 FOR $3) = $4""",
        since,
        channel,
        len(prefix),
        prefix,
    )
    return count


# --- deeply nested JSON over HTTP and MLLP (the session's services) ----------------------


@pytest.mark.parametrize("depth", [5000, 1000, 300, 150])
async def test_a_deeply_nested_json_body_is_answered_below_500_and_kept(
    services: RunningServices, db: asyncpg.Connection, depth: int
) -> None:
    """Nested arrays far under the body cap are invalid input like any other: answered
    422 (or 401 without a key) on the JSON API and FHIR, and kept, refusal and all."""
    body = b"[" * depth + b"]" * depth
    since = await now(db)
    answers = {}
    async with httpx.AsyncClient(base_url=services.ingest_url, timeout=30) as client:
        for path, headers in (
            ("/v1/lab-results", {"content-type": "application/json", **services.headers}),
            ("/fhir/r4", {**FHIR, **services.headers}),
            ("/fhir/r4/Observation", {**FHIR, **services.headers}),
            ("/v1/lab-results", {"content-type": "application/json"}),  # no key: 401
        ):
            response = await client.post(path, content=body, headers=headers)
            keyed = "key" if headers.get("Authorization") else "none"
            answers[(path, keyed)] = response.status_code
    assert all(status < 500 for status in answers.values()), answers
    assert answers[("/v1/lab-results", "key")] == 422, answers
    assert answers[("/v1/lab-results", "none")] == 401, answers
    kept = await kept_since(db, since, "http-json", b"[[[[") + await kept_since(
        db, since, "fhir", b"[[[["
    )
    assert kept == len(answers)


async def test_a_body_naming_a_member_twice_is_refused_on_json_and_fhir_and_kept(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """A second ``subject_id`` in one object (RFC 8259 leaves it to each reader) must not
    decide whose result it is: refused as invalid JSON, without naming it, and kept."""
    since = await now(db)
    first, second = new_subject_id(), new_subject_id()
    result = json.dumps(haemoglobin(first, "6.0"))[:-1] + f', "subject_id": "{second}"}}'
    observation = '{"resourceType": "Observation", "resourceType": "Patient", "status": "final"}'
    async with httpx.AsyncClient(
        base_url=services.ingest_url, headers=services.headers, timeout=30
    ) as client:
        json_answer = await client.post(
            "/v1/lab-results", content=result, headers={"content-type": "application/json"}
        )
        fhir_answer = await client.post("/fhir/r4/Observation", content=observation, headers=FHIR)
    assert json_answer.status_code == 422, json_answer.text
    assert fhir_answer.status_code in (400, 422), fhir_answer.text
    assert "json_invalid" in json_answer.text
    assert second not in json_answer.text
    kept = await kept_since(db, since, "http-json", result.encode()[:4]) + await kept_since(
        db, since, "fhir", observation.encode()[:4]
    )
    assert kept >= 2
    assert (
        await db.fetchval("SELECT count(*) FROM events WHERE subject_id = ANY($1)", [first, second])
        == 0
    )


async def test_an_mllp_frame_of_nested_brackets_is_refused_and_kept_not_answered_try_again(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """Any bytes on the MLLP port are answered and kept: a frame of nested brackets is
    not HL7, so AR (never AE "send again later", which the sender would do for ever)."""
    since = await now(db)
    client = await MllpClient.connect(services.mllp_port)
    try:
        ack = await client.exchange(NESTED)
    finally:
        await client.close()
    assert ack_code(ack) == "AR", str(ack)
    assert await kept_since(db, since, "mllp", b"[[[[") == 1


# --- deeply nested records on Kafka (a stack of this module's own) -----------------------


@dataclass
class KafkaStack:
    dsn: str
    bootstrap: str
    ingest_url: str
    key: IssuedKey


@pytest.fixture(scope="module")
async def kafka_stack(
    postgres_dsn: str,
    smtp_server: tuple[int, MailCatcher],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[KafkaStack]:
    """A broker, database, rules service and ingest of this module's own: a poison record
    that stopped the rules service would stop the session's."""
    dsn = await create_database(postgres_dsn, prefix="nested")
    log_dir = tmp_path_factory.mktemp("nested-logs")
    processes: list[ManagedProcess] = []
    with components.tansu() as broker:
        ports = {"rules": free_port(), "ingest": free_port()}
        env = service_env(
            database_url=as_service_role(dsn),
            kafka_bootstrap=broker.bootstrap,
            smtp_port=smtp_server[0],
            VIGIL_RULES_PORT=str(ports["rules"]),
            VIGIL_INGEST_PORT=str(ports["ingest"]),
            VIGIL_AUDIT_ANCHOR_FILE=str(log_dir / "anchors.jsonl"),
        )
        try:
            processes.append(start_service("safety_rules", "rules", ports["rules"], env, log_dir))
            processes.append(start_service("ingest", "ingest", ports["ingest"], env, log_dir))
            yield KafkaStack(
                dsn,
                broker.bootstrap,
                f"http://127.0.0.1:{ports['ingest']}",
                await issue_api_key(dsn),
            )
        finally:
            for process in reversed(processes):
                process.stop()
    await drop_database(postgres_dsn, dsn)


async def publish_on_every_partition(bootstrap: str, topic: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=4_000_000)
    await producer.start()
    try:
        for partition in sorted(await producer.partitions_for(topic)):
            await producer.send_and_wait(topic, value, partition=partition)
    finally:
        await producer.stop()


async def anaemia_signals_follow(stack: KafkaStack, subjects: list[str]) -> None:
    """Report each subject's haemoglobin of 6.0 g/dL and wait for its signal."""
    async with httpx.AsyncClient(
        base_url=stack.ingest_url, headers=stack.key.headers, timeout=30
    ) as client:
        for subject in subjects:
            response = await client.post("/v1/lab-results", json=haemoglobin(subject, "6.0"))
            assert response.status_code == 202, response.text
    connection = await asyncpg.connect(stack.dsn)
    try:
        for subject in subjects:
            await eventually(
                lambda subject=subject: connection.fetch(
                    "SELECT 1 FROM events WHERE subject_id = $1 AND type = $2", subject, RAISED
                ),
                timeout=90,
                what=f"the anaemia signal of {subject}, reported after the nested records",
            )
    finally:
        await connection.close()


async def kept_from_kafka(stack: KafkaStack, raw: bytes) -> int:
    connection = await asyncpg.connect(stack.dsn)
    try:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM received_messages WHERE channel = 'kafka' AND raw = $1", raw
        )
        return count
    finally:
        await connection.close()


async def test_a_deeply_nested_record_on_an_input_topic_never_stops_the_safety_rules(
    kafka_stack: KafkaStack,
) -> None:
    """A record that is not a valid event is kept and dead-lettered, and never stops its
    partition (README, "safety_rules"; docs/security.md API10): nested arrays on every
    partition of the results topic, and on the dead-letter topic (a raw dead letter is
    kept too), then results on every partition are judged."""
    await publish_on_every_partition(kafka_stack.bootstrap, LAB_RESULTS, NESTED)
    await publish_on_every_partition(kafka_stack.bootstrap, DEAD_LETTERS, NESTED)
    await anaemia_signals_follow(kafka_stack, [f"FB-{uuid.uuid4().hex[:10]}" for _ in range(6)])
    assert await kept_from_kafka(kafka_stack, NESTED) >= 1


async def test_deeply_nested_json_on_an_input_topic_does_not_stop_the_rules_consumer(
    kafka_stack: KafkaStack,
) -> None:
    """A poison record can delay a partition by seconds, never stop it: 100,000 arrays
    opened and never closed, published straight onto the results topic as a partner may,
    are refused and kept, and the results after them are judged."""
    await publish_on_every_partition(kafka_stack.bootstrap, LAB_RESULTS, UNBALANCED)
    await anaemia_signals_follow(kafka_stack, [f"AFTER-{uuid.uuid4().hex[:8]}" for _ in range(3)])
    assert await kept_from_kafka(kafka_stack, UNBALANCED) >= 1


# --- slow clients: an HTTP connection that never finishes its request is closed -----------


@pytest.fixture(scope="module")
def slow_ingest(
    postgres_dsn: str,
    kafka_bootstrap: str,
    smtp_server: tuple[int, MailCatcher],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PrivateIngest]:
    with private_ingest(
        server_dsn=postgres_dsn,
        kafka_bootstrap=kafka_bootstrap,
        smtp_port=smtp_server[0],
        log_dir=tmp_path_factory.mktemp("slow"),
        VIGIL_HTTP_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
        VIGIL_HTTP_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
    ) as ingest:
        yield ingest


def port_of(ingest: PrivateIngest) -> int:
    return int(ingest.url.rsplit(":", 1)[1])


async def test_an_http_connection_that_never_finishes_its_request_is_closed(
    slow_ingest: PrivateIngest,
) -> None:
    """A connection that sends nothing, or only part of its request head, is closed after
    VIGIL_HTTP_HEADER_TIMEOUT_SECONDS: held for ever, enough of them would exhaust the
    process's file descriptors, and with them its database connections."""
    port = port_of(slow_ingest)
    silent = await asyncio.open_connection("127.0.0.1", port)
    partial = await asyncio.open_connection("127.0.0.1", port)
    partial[1].write(b"POST /v1/lab-results HTTP/1.1\r\nHost: vigil\r\n")
    await partial[1].drain()
    try:
        closed = await asyncio.gather(
            closed_by_server(silent[0], HEADER_TIMEOUT * 5), closed_by_server(partial[0], 10)
        )
    finally:
        for _, writer in (silent, partial):
            writer.close()
    assert closed == [True, True], "a connection that sends no whole request is held open"


async def test_connections_beyond_the_cap_are_closed_at_once_and_service_resumes(
    slow_ingest: PrivateIngest,
) -> None:
    """At most VIGIL_HTTP_MAX_CONNECTIONS are held; one more is closed at once, and once
    the idle ones are closed a request is answered again."""
    port = port_of(slow_ingest)
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(MAX_CONNECTIONS)]
    try:
        await asyncio.sleep(0.2)
        extra = await asyncio.open_connection("127.0.0.1", port)
        try:
            assert await closed_by_server(extra[0], HEADER_TIMEOUT / 2)
        finally:
            extra[1].close()
    finally:
        for _, writer in held:
            writer.close()
    async with httpx.AsyncClient(base_url=slow_ingest.url, timeout=10) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
