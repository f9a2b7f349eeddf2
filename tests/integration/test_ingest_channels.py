"""Ingest's channels over real sockets (HTTP JSON, FHIR, MLLP) on the real receipt store
and broker, served in the test process by ingest's own composition root: each answer comes
only once the message is kept and its events published; a refused write is kept; while
the broker is away the sender is told to send again, and the re-drive publishes what was
kept once it is back."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from shared.events.topics import LAB_RESULTS
from tests.support import components
from tests.support.api_keys import IssuedKey, issue_api_key
from tests.support.components import create_database, drop_database
from tests.support.ingest_in_process import IngestInProcess, ingest_in_process, ingest_settings
from tests.support.mllp import ack_code, exchange_bytes, oru
from tests.support.topics import records_holding
from tests.support.waiting import eventually
from tests.unit.test_fhir_mapping import observation
from vigil.devstack.tansu import TansuBroker

pytestmark = pytest.mark.integration

FHIR = {"content-type": "application/fhir+json"}


@dataclass(frozen=True)
class Stack:
    ingest: IngestInProcess
    key: IssuedKey
    db: asyncpg.Pool
    tansu: TansuBroker


@pytest.fixture(scope="module")
def tansu() -> Iterator[TansuBroker]:
    """A broker of this module's own: the last test stops and restarts it."""
    with components.tansu() as broker:
        yield broker


@pytest.fixture(scope="module")
async def stack(postgres_dsn: str, tansu: TansuBroker) -> AsyncIterator[Stack]:
    """One ingest for the module, on a database of its own, with an API key of ``tests``."""
    dsn = await create_database(postgres_dsn)
    db = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        key = await issue_api_key(dsn)
        settings = ingest_settings(
            dsn, tansu.bootstrap, ingest_redrive_after_seconds=0.5, kafka_publish_timeout_seconds=3
        )
        async with ingest_in_process(settings) as ingest:
            yield Stack(ingest, key, db, tansu)
    finally:
        await db.close()
        await drop_database(postgres_dsn, dsn)


async def on_topic(bootstrap: str, topic: str, wanted: bytes) -> bool:
    """Whether a record holding ``wanted`` (an event id) is on ``topic`` (waits for it)."""
    return bool(await records_holding(bootstrap, topic, wanted))


async def kept_and_published(stack: Stack, event_id: uuid.UUID) -> asyncpg.Record:
    """The receipt that owes ``event_id``, kept as the answer arrives, and its event on the
    topic. The outbox's published mark is a hint the receipt writer records after the
    answer (with the next group, or on its own when none waits), so it is waited for."""
    row = await stack.db.fetchrow(
        "SELECT * FROM received_messages WHERE $1 = ANY(event_ids)", event_id
    )
    assert row is not None
    assert await on_topic(stack.tansu.bootstrap, LAB_RESULTS, str(event_id).encode())
    await eventually(
        lambda: stack.db.fetchval(
            "SELECT published_at IS NOT NULL FROM ingest_outbox WHERE event_id = $1", event_id
        ),
        timeout=10,
        what="the outbox row marked published",
    )
    return row


def lab_result(subject: str, message: str) -> bytes:
    return json.dumps(
        {
            "subject_id": subject,
            "loinc_code": "718-7",
            "value": 8.6,
            "unit": "g/dL",
            "collected_at": "2026-11-20T08:30:00+08:00",
            "source_message_id": message,
        }
    ).encode()


async def post(stack: Stack, path: str, body: bytes, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.ingest.url, timeout=30) as client:
        return await client.post(path, content=body, headers=headers)


async def test_a_json_lab_result_is_answered_once_kept_verbatim_and_published(
    stack: Stack,
) -> None:
    raw = lab_result("01-003", f"JSON-{uuid.uuid4().hex[:8]}")

    response = await post(
        stack, "/v1/lab-results", raw, **stack.key.headers, **{"content-type": "application/json"}
    )

    assert response.status_code == 202, response.text
    row = await kept_and_published(stack, uuid.UUID(response.json()["event_ids"][0]))
    assert (bytes(row["raw"]), row["channel"], row["outcome"]) == (raw, "http-json", "accepted")
    assert row["principal_source"] == "tests"


async def test_a_fhir_observation_is_answered_once_kept_and_published(stack: Stack) -> None:
    resource = observation(id=f"o-{uuid.uuid4().hex[:8]}")
    raw = json.dumps(resource).encode()

    response = await post(stack, "/fhir/r4/Observation", raw, **stack.key.headers, **FHIR)

    assert response.status_code == 201, response.text
    row = await stack.db.fetchrow("SELECT * FROM received_messages WHERE raw = $1", raw)
    assert (row["channel"], row["outcome"]) == ("fhir", "accepted")
    (event_id,) = row["event_ids"]
    await kept_and_published(stack, event_id)


async def test_an_hl7_result_over_mllp_is_acknowledged_once_kept_and_published(
    stack: Stack,
) -> None:
    control = f"C{uuid.uuid4().hex[:10]}"
    message = oru("LIS", "PKUPH-LAB", control, "01-003", value="8.4")

    ack = await exchange_bytes(stack.ingest.mllp_port, message)

    assert ack_code(ack) == "AA"
    row = await stack.db.fetchrow("SELECT * FROM received_messages WHERE raw = $1", message)
    assert (row["channel"], row["outcome"]) == ("mllp", "accepted")
    (event_id,) = row["event_ids"]
    await kept_and_published(stack, event_id)


async def test_a_write_without_a_key_is_refused_and_kept(stack: Stack) -> None:
    raw = lab_result("01-003", f"NOKEY-{uuid.uuid4().hex[:8]}")

    response = await post(stack, "/v1/lab-results", raw, **{"content-type": "application/json"})

    assert response.status_code == 401
    assert response.json()["code"] == "missing-credential"
    row = await stack.db.fetchrow("SELECT * FROM received_messages WHERE raw = $1", raw)
    assert row["outcome"] == "rejected"
    assert row["reason"].startswith("401 missing-credential")


async def test_while_the_broker_is_away_senders_are_told_to_retry_and_the_message_is_redriven(
    stack: Stack,
) -> None:
    raw = lab_result("01-003", f"AWAY-{uuid.uuid4().hex[:8]}")
    await asyncio.to_thread(stack.tansu.stop)
    try:
        response = await post(
            stack,
            "/v1/lab-results",
            raw,
            **stack.key.headers,
            **{"content-type": "application/json"},
        )
        assert response.status_code == 503, response.text
        row = await stack.db.fetchrow("SELECT * FROM received_messages WHERE raw = $1", raw)
        assert row["outcome"] == "accepted"  # kept: the re-drive owes its event
    finally:
        await asyncio.to_thread(stack.tansu.start)
    (event_id,) = row["event_ids"]

    async def redriven() -> bool:
        return bool(
            await stack.db.fetchval(
                "SELECT redrives > 0 FROM ingest_outbox WHERE event_id = $1", event_id
            )
        ) and await on_topic(stack.tansu.bootstrap, LAB_RESULTS, str(event_id).encode())

    assert await eventually(redriven, timeout=90, what="the re-drive after the outage")
