"""Marks of published events are hints: they ride in the next group's transaction, and
are written alone only once no receipt came for a while; no sender waits for them."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

import asyncpg
import pytest

from services.ingest.adapters.receipt_writer import GroupCommitWriter, Owned
from services.ingest.adapters.receipts import keep_owned, mark_published
from services.ingest.domain.authorization import claims, decide
from services.ingest.handlers.intake import outgoing_event
from services.ingest.handlers.ports import Claims
from shared.supervision import Supervisor
from tests.support.intake import LAB_A, lab_result, receipt

pytestmark = pytest.mark.integration


def request(subject: str) -> Owned:
    envelopes = [lab_result(subject, message=f"M-{subject}")]
    enrolled, records, touched = claims(envelopes)
    return Owned(
        receipt(),
        [outgoing_event(envelope) for envelope in envelopes],
        Claims(LAB_A.source, enrolled, records, touched),
        functools.partial(decide, envelopes, LAB_A),
    )


@asynccontextmanager
async def writer(pool: asyncpg.Pool, mark_delay: float) -> AsyncIterator[GroupCommitWriter]:
    running = GroupCommitWriter(
        pool,
        keep=functools.partial(keep_owned, deadline=timedelta(seconds=30)),
        mark=mark_published,
        mark_delay=mark_delay,
    )
    supervisor = Supervisor("ingest-test")
    supervisor.start("receipt-writer", running.run)
    try:
        yield running
    finally:
        await supervisor.stop()


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(600):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("never happened")


async def test_marks_ride_in_the_next_groups_transaction(pool: asyncpg.Pool) -> None:
    async with writer(pool, mark_delay=3600) as running:
        first = request("S-1")
        assert await running.submit(first) == []
        running.mark_published([item.event_id for item in first.outgoing])
        second = request("S-2")
        assert await running.submit(second) == []

        marked = await pool.fetchrow(
            "SELECT published_at, xmin::text AS tx FROM ingest_outbox WHERE receipt_id = $1",
            first.receipt_id,
        )
        kept = await pool.fetchval(
            "SELECT xmin::text FROM received_messages WHERE receipt_id = $1", second.receipt_id
        )
        assert marked["published_at"] is not None
        assert marked["tx"] == kept  # written by the second group's transaction


async def test_marks_alone_are_written_once_no_receipt_comes(pool: asyncpg.Pool) -> None:
    async with writer(pool, mark_delay=0.01) as running:
        only = request("S-3")
        assert await running.submit(only) == []
        running.mark_published([item.event_id for item in only.outgoing])

        async def marked() -> bool:
            published = await pool.fetchval(
                "SELECT published_at FROM ingest_outbox WHERE receipt_id = $1", only.receipt_id
            )
            return published is not None

        await eventually(marked)
