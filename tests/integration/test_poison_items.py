"""One bad item never stops the line, on a real PostgreSQL and broker: an outbox row or a
re-driven record the broker refuses waits alone while the rest is published, and an event
the projection cannot apply is skipped, recorded in the audit log and shown."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer
from faststream.kafka import KafkaBroker

from services.ingest.adapters.publisher import KafkaEventPublisher
from services.ingest.adapters.receipts import PostgresReceiptStore, record_receipt
from services.ingest.handlers.intake import Intake
from services.ingest.handlers.ports import Outgoing, Receipt
from services.safety_rules.adapters.outbox_relay import OutboxRelay
from services.safety_rules.adapters.postgres import PostgresRulesUnitOfWork
from services.safety_rules.adapters.rule_pack_files import load_rule_packs
from services.safety_rules.adapters.subject_state_projection import SubjectStateProjection
from services.safety_rules.handlers.facts import handle_batch
from services.settings import VigilSettings
from shared.db.pool import create_pool
from shared.events import LabResultReported, wrap
from shared.events.topics import LAB_RESULTS, SAFETY_SIGNALS
from shared.eventstore import PayloadEvent
from shared.kafka import ensure_topics, make_broker
from shared.projections import ProjectionRunner
from shared.supervision import Supervisor
from tests.support import components
from tests.support.services import REPO

pytestmark = pytest.mark.integration


@pytest.fixture
async def supervisor() -> AsyncIterator[Supervisor]:
    """A supervisor whose reports the test reads; stopped afterwards."""
    async with Supervisor("test-poison") as running:
        yield running


PACKS = load_rule_packs(REPO / "studies")
TOO_LARGE = b"x" * 2_000_000  # over the Kafka client's request size: refused for itself


@pytest.fixture
async def broker() -> AsyncIterator[tuple[str, KafkaBroker]]:
    """A private broker (so no other test's consumer sees these records) and a client."""
    with components.tansu() as tansu:
        settings = VigilSettings(kafka_bootstrap=tansu.bootstrap, kafka_partitions=1)
        await ensure_topics(settings)
        client = make_broker(settings, client_id="test-poison")
        await client.connect()
        try:
            yield tansu.bootstrap, client
        finally:
            await client.stop()


def hb(subject: str, value: str) -> LabResultReported:
    return LabResultReported(
        study_id="NCT05262686",
        subject_id=subject,
        loinc_code="718-7",
        value=Decimal(value),
        unit="g/dL",
        collected_at=datetime(2026, 6, 1, 9, tzinfo=UTC),
        source_message_id=f"M-{subject}-{value}",
    )


async def store(pool: asyncpg.Pool, *facts: LabResultReported) -> None:
    """What the rules service does with a batch: facts, signals and their outbox rows."""
    async with pool.acquire() as connection, connection.transaction():
        envelopes = [wrap(fact, source="/tests") for fact in facts]
        await handle_batch(envelopes, PostgresRulesUnitOfWork(connection), PACKS)


async def read_back(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    values: list[bytes] = []
    try:
        async with asyncio.timeout(60):
            while len(values) < count:
                batches = await consumer.getmany(timeout_ms=500)
                values += [r.value or b"" for rs in batches.values() for r in rs]
    finally:
        await consumer.stop()
    return values


async def test_an_outbox_row_the_broker_refuses_waits_alone_and_the_rows_behind_it_go(
    fresh_dsn: str, broker: tuple[str, KafkaBroker], supervisor: Supervisor
) -> None:
    bootstrap, client = broker
    pool = await create_pool(fresh_dsn)
    try:
        await store(pool, hb("A", "8.1"), hb("B", "8.2"), hb("C", "8.3"))
        # three signals, and a data-quality issue for each (the subjects are not enrolled)
        rows = await pool.fetch("SELECT event_id, topic FROM outbox ORDER BY created_at")
        signals = [r["event_id"] for r in rows if r["topic"] == SAFETY_SIGNALS]
        assert len(signals) == 3
        poison = signals[0]
        await pool.execute("UPDATE outbox SET value = $2 WHERE event_id = $1", poison, TOO_LARGE)
        progress = supervisor.watch("outbox-relay")
        relay = OutboxRelay(pool, client)

        assert await relay.relay_once(progress) == len(rows) - 1
        assert await relay.relay_once(progress) == 0  # held back: no hot loop on it

        pending = await pool.fetch("SELECT event_id FROM outbox WHERE published_at IS NULL")
        assert [r["event_id"] for r in pending] == [poison]
        values = b"".join(await read_back(bootstrap, SAFETY_SIGNALS, 2))
        assert str(poison).encode() not in values
        assert all(str(signal).encode() in values for signal in signals[1:])
        (report,) = supervisor.report()
        assert report["item_failures"] == 1
        assert report["failing_items"][0]["item"] == f"outbox {poison}"
        assert report["failing_items"][0]["reason"].startswith("MessageSizeTooLargeError")
    finally:
        await pool.close()


async def test_a_redriven_record_the_broker_refuses_waits_and_the_others_are_published(
    fresh_dsn: str, broker: tuple[str, KafkaBroker], supervisor: Supervisor
) -> None:
    bootstrap, client = broker
    pool = await create_pool(fresh_dsn)
    publisher = KafkaEventPublisher(client, timeout=10)
    try:
        outgoing = [
            Outgoing(uuid.uuid4(), LAB_RESULTS, b"NCT05262686/R", value)
            for value in (b'{"n": 1}', TOO_LARGE, b'{"n": 3}')
        ]
        receipt = Receipt("http-json", "test", "application/json", b"{}", "accepted")
        async with pool.acquire() as connection:
            await record_receipt(connection, receipt, outgoing, deadline=timedelta(0))
        intake = Intake(PostgresReceiptStore(pool, redrive_after=timedelta(seconds=30)), publisher)
        progress = supervisor.watch("redrive")

        assert await intake.redrive(progress) == 2

        values = await read_back(bootstrap, LAB_RESULTS, 2)
        assert sorted(values) == [b'{"n": 1}', b'{"n": 3}']
        refused = await pool.fetchrow(
            "SELECT redrives, next_check_at > now() + interval '30 seconds' AS later "
            "FROM ingest_outbox WHERE event_id = $1",
            outgoing[1].event_id,
        )
        assert refused["redrives"] == 1
        assert refused["later"]  # waits its exponentially later check, not the next round
        (report,) = supervisor.report()
        assert report["failing_items"][0]["item"] == f"event {outgoing[1].event_id}"
    finally:
        await pool.close()


async def with_haemoglobin(pool: asyncpg.Pool) -> set[str]:
    """The subjects whose read model holds a latest haemoglobin."""
    rows = await pool.fetch("SELECT subject_id FROM subject_state WHERE state->'latest' ? '718-7'")
    return {row["subject_id"] for row in rows}


class BreaksOn:
    """The subject-state projection with a bug that shows on one subject's lab result."""

    def __init__(self, subject_id: str) -> None:
        self._inner = SubjectStateProjection()
        self.name = self._inner.name
        self.subject_id: str | None = subject_id

    async def reset(self, connection: asyncpg.Connection) -> None:
        await self._inner.reset(connection)

    async def apply(self, connection: asyncpg.Connection, events: Sequence[PayloadEvent]) -> None:
        if any(
            event.subject_id == self.subject_id and event.type == LabResultReported.event_type
            for event in events
        ):
            raise LookupError("a bug in the projection")
        await self._inner.apply(connection, events)


async def test_an_event_the_projection_cannot_apply_is_skipped_recorded_and_shown(
    fresh_dsn: str,
    supervisor: Supervisor,
) -> None:
    pool = await create_pool(components.as_service_role(fresh_dsn))
    projection = BreaksOn("B")
    runner = ProjectionRunner(pool, projection)
    try:
        await store(pool, hb("A", "12.1"), hb("B", "12.2"), hb("C", "12.3"))
        progress = supervisor.watch("projection.subject_state")

        await runner.step(progress)

        assert await with_haemoglobin(pool) == {"A", "C"}  # the others went on
        skipped = await pool.fetch(
            "SELECT payload FROM events WHERE stream_id = 'projection-subject_state'"
        )
        assert len(skipped) == 1
        assert "LookupError at tests/integration/test_poison_items.py" in skipped[0]["payload"]
        assert await runner.skipped() == 1
        divergence = await runner.divergence()
        assert divergence is not None
        assert "vigil replay subject_state" in divergence
        (report,) = supervisor.report()
        assert report["item_failures"] == 1

        projection.subject_id = None  # the bug is fixed; the read model is rebuilt
        await runner.rebuild()

        assert await runner.skipped() == 0
        assert await runner.divergence() is None
        assert await with_haemoglobin(pool) == {"A", "B", "C"}
    finally:
        await pool.close()
