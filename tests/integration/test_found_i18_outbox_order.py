"""Found while answering issue 18's break-it tester, who expected two ingest writers could
deadlock: two transactions owing some of the same events (a message resent on two
connections, or to two ingest instances, alongside others) inserted the outbox rows in
the order their messages came, so each could hold a row the other waits for. PostgreSQL
breaks such a cycle by failing one of them, and the sender of a request kept alone is
told to send again (503). The rows now go in in event id order: one waits, none fails."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import replace
from datetime import timedelta

import asyncpg
import pytest

from services.ingest.adapters.receipts import PostgresReceiptStore, receipt_row
from services.ingest.handlers.ports import Receipt
from shared.db.pool import create_pool
from shared.db.receipts import insert_receipt
from tests.support.components import backend_waiting_on_lock
from tests.support.intake import owed
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

LOW = uuid.UUID(int=1 << 120)
HIGH = uuid.UUID(int=2 << 120)


async def _deadlocks(connection: asyncpg.Connection) -> int:
    count: int = await connection.fetchval(
        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
    )
    return count


async def test_two_receipts_owing_the_same_events_never_deadlock(fresh_dsn: str) -> None:
    pool = await create_pool(fresh_dsn)
    other = await asyncpg.connect(fresh_dsn)  # another writer: LOW, then HIGH
    watcher = await asyncpg.connect(fresh_dsn)
    message = Receipt("http-json", "127.0.0.1", "application/json", b"{}", "accepted")
    try:
        store = PostgresReceiptStore(pool, redrive_after=timedelta(seconds=30))
        theirs = uuid.uuid4()
        await other.execute("BEGIN")
        await insert_receipt(other, receipt_row(message, [], theirs))

        async def owe(event_id: uuid.UUID) -> None:
            await other.execute(
                "INSERT INTO ingest_outbox (event_id, receipt_id, topic, value, next_check_at)"
                " VALUES ($1, $2, 'vigil.lab-results.v1', '\\x00', now())"
                " ON CONFLICT (event_id) DO NOTHING",
                event_id,
                theirs,
            )

        await owe(LOW)
        before = await _deadlocks(watcher)
        # this receipt's message gives HIGH first, then LOW
        kept = asyncio.create_task(
            store.record(
                message,
                [replace(owed(), event_id=HIGH), replace(owed(), event_id=LOW)],
            )
        )

        await eventually(
            lambda: backend_waiting_on_lock(watcher, "ingest_outbox"),
            timeout=10,
            what="the receipt waiting for the other's row",
        )
        # the other writer owes HIGH too: a cycle had the receipt taken HIGH already
        with contextlib.suppress(asyncpg.DeadlockDetectedError):  # counted below
            await asyncio.wait_for(owe(HIGH), 5)
        await other.execute("ROLLBACK")
        receipt_id = await asyncio.wait_for(kept, 10)

        assert await _deadlocks(watcher) == before, "the two writers deadlocked"
        rows = await watcher.fetch("SELECT event_id, receipt_id FROM ingest_outbox")
        assert sorted((row["event_id"], row["receipt_id"]) for row in rows) == [
            (LOW, receipt_id),
            (HIGH, receipt_id),
        ]
    finally:
        await other.close()
        await watcher.close()
        await pool.close()
