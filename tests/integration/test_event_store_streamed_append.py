"""The append streams a batch's rows to COPY as it builds them: a batch larger than one
COPY chunk keeps its positions, versions and hash chain, and every refusal comes before
anything is written (the caller's transaction is still usable after it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from shared import eventstore
from shared.db.pool import create_pool
from shared.events import Envelope, LabResultReported, wrap
from shared.eventstore import EventIdConflict, NewEvent, StreamVersionConflict
from shared.eventstore.canonical import GENESIS_HASH, chain_hash
from shared.eventstore.verify import verify_chain

pytestmark = pytest.mark.integration

# asyncpg sends COPY data every 512 kB; rows of about 800 bytes of JSON text make a batch of
# this many several chunks
LARGE_BATCH = 1500


def result(subject: str, n: int) -> Envelope:
    payload = LabResultReported(
        study_id="NCT05262686",
        subject_id=subject,
        loinc_code="718-7",
        value=Decimal(n % 200) / 10,
        unit="g/dL",
        collected_at=datetime(2026, 6, 1, 9, tzinfo=UTC) + timedelta(minutes=n),
        source_message_id=f"STREAM-{subject}-{n}",
    )
    return wrap(payload, source="/tests")


@pytest.fixture
async def db(fresh_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(fresh_dsn)
    try:
        yield connection
    finally:
        await connection.close()


async def test_a_batch_of_several_copy_chunks_keeps_positions_versions_and_the_chain(
    db: asyncpg.Connection, fresh_dsn: str
) -> None:
    envelopes = [result(f"S{n % 7}", n) for n in range(LARGE_BATCH)]
    async with db.transaction():
        first = await eventstore.append(db, [NewEvent(envelopes[0])])
    async with db.transaction():
        appended = await eventstore.append(db, [NewEvent(e) for e in envelopes[1:]])

    assert [a.position for a in first + appended] == list(range(1, LARGE_BATCH + 1))
    stored = await eventstore.read_all(db, limit=LARGE_BATCH + 1)
    assert [e.event_id for e in stored] == [e.id for e in envelopes]
    prev = GENESIS_HASH
    for event in stored:
        assert (event.prev_hash, event.hash) == (prev, chain_hash(prev, event.canonical()))
        prev = event.hash
    for subject in ("S0", "S6"):
        stream = await eventstore.read_stream(db, f"subject-NCT05262686/{subject}")
        assert [e.stream_version for e in stream] == list(range(1, len(stream) + 1))
    pool = await create_pool(fresh_dsn, max_size=2)
    try:
        report = await verify_chain(pool)
    finally:
        await pool.close()
    assert (report.ok, report.checked) == (True, LARGE_BATCH)
    assert await eventstore.head(db) == (LARGE_BATCH, prev)


async def test_a_changed_duplicate_at_the_end_of_a_large_batch_is_refused_before_any_write(
    db: asyncpg.Connection,
) -> None:
    stored = result("S1", 0)
    async with db.transaction():
        await eventstore.append(db, [NewEvent(stored)])
    changed = stored.model_copy(update={"data": {**stored.data, "value": 99.9}})
    batch = [NewEvent(result(f"S{n % 5}", n)) for n in range(1, LARGE_BATCH)]

    async with db.transaction():
        with pytest.raises(EventIdConflict, match="position 1"):
            await eventstore.append(db, [*batch, NewEvent(changed)])
        # nothing was sent: the transaction has not failed, and holds no new row
        assert await db.fetchval("SELECT count(*) FROM events") == 1
    assert await eventstore.head(db) == (1, (await eventstore.read_all(db))[0].hash)


async def test_a_changed_duplicate_within_one_batch_is_refused(db: asyncpg.Connection) -> None:
    first = result("S1", 1)
    changed = first.model_copy(update={"data": {**first.data, "value": 0.5}})

    async with db.transaction():
        with pytest.raises(EventIdConflict, match="earlier in the same batch"):
            await eventstore.append(
                db, [NewEvent(first), NewEvent(result("S2", 2)), NewEvent(changed)]
            )
        assert await db.fetchval("SELECT count(*) FROM events") == 0


async def test_a_failed_expected_version_late_in_a_large_batch_stores_nothing(
    db: asyncpg.Connection,
) -> None:
    batch = [NewEvent(result("S1", n)) for n in range(LARGE_BATCH - 1)]
    late = NewEvent(result("S1", LARGE_BATCH), expected_version=3)

    async with db.transaction():
        with pytest.raises(
            StreamVersionConflict, match=f"at version {LARGE_BATCH - 1}, expected 3"
        ):
            await eventstore.append(db, [*batch, late])
        assert await db.fetchval("SELECT count(*) FROM events") == 0

    # the same batch with the right expectation goes in whole, versions in order
    late = NewEvent(result("S1", LARGE_BATCH), expected_version=LARGE_BATCH - 1)
    async with db.transaction():
        appended = await eventstore.append(db, [*batch, late])
    assert [a.stream_version for a in appended] == list(range(1, LARGE_BATCH + 1))
