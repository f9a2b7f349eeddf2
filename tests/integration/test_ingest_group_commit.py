"""Group commit on the real receipt store (PostgreSQL) and broker (Tansu): requests that
arrive together are kept in one transaction, each is answered only once kept, and one
that the database refuses, or that is refused, fails alone while its neighbours are kept."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta

import asyncpg
import pytest

from services.ingest.adapters.publisher import KafkaEventPublisher
from services.ingest.adapters.receipts import PostgresReceiptStore
from services.ingest.handlers.intake import Forbidden, Intake
from services.ingest.handlers.ports import StorageUnavailable
from services.settings import VigilSettings
from shared.db.pool import create_pool
from shared.kafka import ensure_topics, make_broker
from shared.supervision import Supervisor
from tests.support import components
from tests.support.intake import LAB_A, LAB_B, lab_result, receipt
from vigil.devstack.tansu import TansuBroker

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tansu() -> Iterator[TansuBroker]:
    with components.tansu() as broker:
        yield broker


@dataclass
class Running:
    intake: Intake
    pool: asyncpg.Pool
    supervisor: Supervisor


@pytest.fixture
async def running(fresh_dsn: str, tansu: TansuBroker) -> AsyncIterator[Running]:
    """Intake with group commit, its writer a supervised task, as ingest's main.py wires it."""
    settings = VigilSettings(kafka_bootstrap=tansu.bootstrap, kafka_partitions=1)
    publisher = KafkaEventPublisher(
        make_broker(settings, client_id="test-ingest-group-commit"),
        timeout=5,
        ensure_topics=functools.partial(ensure_topics, settings),
    )
    pool = await create_pool(fresh_dsn)
    supervisor = Supervisor("ingest-test")
    try:
        store = PostgresReceiptStore(pool, redrive_after=timedelta(seconds=30), group_commit=True)
        assert store.writer is not None
        supervisor.start("receipt-writer", store.writer.run)
        yield Running(Intake(store, publisher), pool, supervisor)
    finally:
        await supervisor.stop()
        await publisher.close()
        await pool.close()


def tagged(tag: str) -> bytes:
    return f'{{"message": "{tag}"}}'.encode()


async def kept_tags(pool: asyncpg.Pool) -> dict[str, int]:
    """Each kept message's tag and the transaction that kept it."""
    rows = await pool.fetch(
        "SELECT convert_from(raw, 'UTF8')::jsonb->>'message' AS tag, xmin::text::bigint AS tx "
        "FROM received_messages"
    )
    return {row["tag"]: row["tx"] for row in rows}


async def test_requests_that_arrive_together_are_kept_in_fewer_transactions_than_requests(
    running: Running,
) -> None:
    tags = [f"m{n}" for n in range(40)]

    await asyncio.gather(
        *(
            running.intake.accept(
                receipt(tagged(tag)), [lab_result(f"S-{tag}", message=tag)], principal=LAB_A
            )
            for tag in tags
        )
    )

    kept = await kept_tags(running.pool)
    assert sorted(kept) == sorted(tags)  # every one answered was kept
    assert len(set(kept.values())) < len(tags)  # and they shared transactions
    owed = await running.pool.fetchval("SELECT count(*) FROM ingest_outbox")
    assert owed == len(tags)


async def test_a_receipt_the_database_refuses_fails_alone_and_its_neighbours_are_kept(
    running: Running,
) -> None:
    # PostgreSQL refuses a NUL character in text: this receipt's own data breaks its group
    poison = replace(receipt(tagged("poison")), source="127.0.0.1\x00")
    good = [f"g{n}" for n in range(12)]

    results = await asyncio.gather(
        *(
            running.intake.accept(
                receipt(tagged(tag)), [lab_result(f"S-{tag}", message=tag)], principal=LAB_A
            )
            for tag in good[:6]
        ),
        running.intake.accept(poison, [lab_result("S-poison", message="p")], principal=LAB_A),
        *(
            running.intake.accept(
                receipt(tagged(tag)), [lab_result(f"S-{tag}", message=tag)], principal=LAB_A
            )
            for tag in good[6:]
        ),
        return_exceptions=True,
    )

    assert isinstance(results[6], StorageUnavailable), results[6]
    assert [r for n, r in enumerate(results) if n != 6] == [[]] * len(good)
    assert sorted(await kept_tags(running.pool)) == sorted(good)
    # the poison's claims were undone with it: nobody owns its subject
    owners = await running.pool.fetchval(
        "SELECT count(*) FROM ingest_subject_owners WHERE subject_id = 'S-poison'"
    )
    records = await running.pool.fetchval(
        "SELECT count(*) FROM ingest_record_owners WHERE subject_id = 'S-poison'"
    )
    assert (owners, records) == (0, 0)


async def test_a_refused_request_in_a_group_is_refused_alone_and_its_neighbours_are_kept(
    running: Running,
) -> None:
    # lab-b sent the result first: it owns the record, and lab-a may not amend it
    await running.intake.accept(
        receipt(tagged("first")), [lab_result("S-owned", message="OWNED")], principal=LAB_B
    )
    good = [f"n{n}" for n in range(10)]

    results = await asyncio.gather(
        running.intake.accept(
            receipt(tagged("amend")), [lab_result("S-owned", message="OWNED")], principal=LAB_A
        ),
        *(
            running.intake.accept(
                receipt(tagged(tag)), [lab_result(f"S-{tag}", message=tag)], principal=LAB_A
            )
            for tag in good
        ),
        return_exceptions=True,
    )

    assert isinstance(results[0], Forbidden), results[0]
    assert results[1:] == [[]] * len(good)
    kept = await running.pool.fetch(
        "SELECT convert_from(raw, 'UTF8')::jsonb->>'message' AS tag, outcome FROM received_messages"
    )
    outcomes = {row["tag"]: row["outcome"] for row in kept}
    assert outcomes == {
        "first": "accepted",
        "amend": "rejected",  # kept, with why
        **dict.fromkeys(good, "accepted"),
    }


async def test_the_writer_is_a_supervised_task_that_readiness_reports(running: Running) -> None:
    await running.intake.accept(
        receipt(tagged("one")), [lab_result("S-one", message=str(uuid.uuid4()))], principal=LAB_A
    )

    (writer,) = [task for task in running.supervisor.report() if task["task"] == "receipt-writer"]
    assert writer["steps"] >= 1
    assert running.supervisor.problem() is None
