"""Intake on the real receipt store (PostgreSQL) and the real broker (Tansu): a message is
kept before it is answered, its events reach their topics, a broker outage is healed by
the re-drive, a resent message owes its events once, and a refused message is kept."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import pytest

from services.ingest.adapters.publisher import KafkaEventPublisher
from services.ingest.adapters.receipts import PostgresReceiptStore
from services.ingest.handlers.intake import Forbidden, Intake
from services.ingest.handlers.ports import BrokerUnavailable
from services.settings import VigilSettings
from shared.db.pool import create_pool
from shared.events.dead_letters import ReceiptReference
from shared.events.topics import DEAD_LETTERS, LAB_RESULTS
from shared.kafka import ensure_topics, make_broker
from tests.support import components
from tests.support.intake import LAB_A, OTHER_STUDY_LAB, lab_result, receipt
from tests.support.topics import records_holding
from tests.support.waiting import eventually
from vigil.devstack.tansu import TansuBroker

pytestmark = pytest.mark.integration

REDRIVE_AFTER = timedelta(seconds=0.5)


@pytest.fixture(scope="module")
def tansu() -> Iterator[TansuBroker]:
    """A broker of this module's own: the outage test stops and restarts it."""
    with components.tansu() as broker:
        yield broker


@dataclass
class Running:
    intake: Intake
    pool: asyncpg.Pool
    bootstrap: str


@pytest.fixture
async def running(fresh_dsn: str, tansu: TansuBroker) -> AsyncIterator[Running]:
    """Intake wired as ingest's main.py wires it, on a database private to the test."""
    settings = VigilSettings(kafka_bootstrap=tansu.bootstrap, kafka_partitions=1)
    publisher = KafkaEventPublisher(
        make_broker(settings, client_id="test-ingest-intake"),
        timeout=3,
        ensure_topics=functools.partial(ensure_topics, settings),
    )
    pool = await create_pool(fresh_dsn)
    try:
        store = PostgresReceiptStore(pool, redrive_after=REDRIVE_AFTER)
        yield Running(Intake(store, publisher), pool, tansu.bootstrap)
    finally:
        if tansu.process is None or tansu.process.poll() is not None:
            await asyncio.to_thread(tansu.start)  # the outage test failed while it was away
        await publisher.close()
        await pool.close()


async def on_topic(bootstrap: str, topic: str, wanted: bytes) -> list[bytes]:
    """The values on ``topic`` that hold ``wanted`` (an event id), once one arrived."""
    return [record.value for record in await records_holding(bootstrap, topic, wanted)]


async def test_an_accepted_message_is_kept_and_published_before_accept_returns(
    running: Running,
) -> None:
    event = lab_result()

    await running.intake.accept(receipt(b'{"as": "sent"}'), [event], principal=LAB_A)

    row = await running.pool.fetchrow("SELECT * FROM received_messages")
    assert (bytes(row["raw"]), row["outcome"], row["event_ids"]) == (
        b'{"as": "sent"}',
        "accepted",
        [event.id],
    )
    assert (row["principal_source"], row["credential"]) == ("lab-a", "api-key:a")
    owed = await running.pool.fetchrow(
        "SELECT published_at IS NOT NULL AS published FROM ingest_outbox WHERE event_id = $1",
        event.id,
    )
    assert owed["published"]
    assert await on_topic(running.bootstrap, LAB_RESULTS, str(event.id).encode())


async def test_a_message_kept_during_a_broker_outage_is_redriven_when_the_broker_is_back(
    running: Running, tansu: TansuBroker
) -> None:
    event = lab_result(message="OUTAGE-1")
    await asyncio.to_thread(tansu.stop)

    with pytest.raises(BrokerUnavailable, match="Kafka"):
        await running.intake.accept(receipt(), [event], principal=LAB_A)

    assert await running.pool.fetchval(
        "SELECT count(*) FROM received_messages WHERE $1 = ANY(event_ids)", event.id
    )
    with pytest.raises(BrokerUnavailable, match="Kafka"):
        await eventually(running.intake.redrive, timeout=10, what="an overdue re-drive")
    assert (
        await running.pool.fetchval(
            "SELECT redrives FROM ingest_outbox WHERE event_id = $1", event.id
        )
        == 0
    )  # the claim was undone: the next round tries again

    await asyncio.to_thread(tansu.start)

    async def redriven() -> int:
        try:
            return await running.intake.redrive()
        except BrokerUnavailable:
            return 0

    assert await eventually(redriven, timeout=60, what="the re-drive after the outage") == 1
    assert await on_topic(running.bootstrap, LAB_RESULTS, str(event.id).encode())


async def test_a_resent_message_is_kept_twice_and_owes_its_events_once(
    running: Running,
) -> None:
    event = lab_result(message="RESENT-1")

    await running.intake.accept(receipt(), [event], principal=LAB_A)
    await running.intake.accept(receipt(), [lab_result(message="RESENT-1")], principal=LAB_A)

    kept = await running.pool.fetch("SELECT event_ids FROM received_messages")
    assert [row["event_ids"] for row in kept] == [[event.id], [event.id]]
    assert await running.pool.fetchval("SELECT count(*) FROM ingest_outbox") == 1


async def test_a_refused_message_is_kept_with_why_and_its_dead_letter_published(
    running: Running,
) -> None:
    with pytest.raises(Forbidden, match="forbidden-study"):
        await running.intake.accept(receipt(b'{"x": 1}'), [lab_result()], principal=OTHER_STUDY_LAB)

    row = await running.pool.fetchrow("SELECT * FROM received_messages")
    assert (bytes(row["raw"]), row["outcome"], row["principal_source"]) == (
        b'{"x": 1}',
        "rejected",
        "lab-x",
    )
    assert row["reason"].startswith("403 1 event(s) refused: forbidden-study")
    (letter,) = await on_topic(running.bootstrap, DEAD_LETTERS, str(row["receipt_id"]).encode())
    assert ReceiptReference.model_validate_json(letter).receipt_id == row["receipt_id"]
    assert await running.pool.fetchval("SELECT count(*) FROM ingest_subject_owners") == 0
