"""Found while breaking issue 18's group commit from outside: PostgreSQL restarted under a
burst of refused requests answered one of them 500. A refusal is kept outside the group
writer, in a transaction of its own; when its connection died under that transaction,
asyncpg raised InterfaceError ("cannot call Transaction.__aexit__(): the underlying
connection is closed"), which the receipt store did not take for an outage. The sender must
be told to send again (503), as for every other write the database could not keep."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from services.ingest.adapters.receipts import PostgresReceiptStore
from services.ingest.handlers.ports import Receipt, StorageUnavailable
from shared.db.pool import create_pool
from tests.support.components import backend_waiting_on_lock
from tests.support.intake import owed
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


async def _killed_while_writing(
    fresh_dsn: str, write: Callable[[PostgresReceiptStore], Coroutine[Any, Any, object]]
) -> BaseException | None:
    """Run ``write`` while its INSERT waits on a lock, end its backend meanwhile, and
    return what it raised."""
    pool = await create_pool(fresh_dsn)
    holder = await asyncpg.connect(fresh_dsn)
    # pg_stat_activity is read once per transaction: the holder's would never change
    watcher = await asyncpg.connect(fresh_dsn)
    try:
        store = PostgresReceiptStore(pool, redrive_after=timedelta(seconds=30))
        await holder.execute("BEGIN; LOCK TABLE received_messages IN ACCESS EXCLUSIVE MODE")
        writing: asyncio.Task[object] = asyncio.create_task(write(store))

        pid = await eventually(
            lambda: backend_waiting_on_lock(watcher, "received_messages"),
            timeout=10,
            what="the INSERT waiting",
        )
        await watcher.fetchval("SELECT pg_terminate_backend($1)", pid)
        try:
            await writing
        except BaseException as error:  # what the store let through is the finding
            return error
        return None
    finally:
        await holder.execute("ROLLBACK")
        await holder.close()
        await watcher.close()
        await pool.close()


async def test_a_refusal_whose_connection_dies_under_it_is_an_outage(fresh_dsn: str) -> None:
    refused = Receipt("http-json", "127.0.0.1", "application/json", b"{}", "rejected", "bad")

    raised = await _killed_while_writing(fresh_dsn, lambda store: store.record(refused, []))

    assert isinstance(raised, StorageUnavailable), repr(raised)


async def test_an_acceptance_whose_connection_dies_under_it_is_an_outage(fresh_dsn: str) -> None:
    accepted = Receipt("http-json", "127.0.0.1", "application/json", b"{}", "accepted")

    raised = await _killed_while_writing(fresh_dsn, lambda store: store.record(accepted, [owed()]))

    assert isinstance(raised, StorageUnavailable), repr(raised)
