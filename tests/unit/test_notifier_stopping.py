"""Stopping the delivery worker (a SIGTERM, a deploy): it claims nothing more, lets the
sends in flight end and records them, so nobody gets a message twice after the restart;
and it stops within the send timeout and the time to record, however slow the server.
The twin of tests/integration/test_found_i16_shutdown.py, on the in-memory unit of work."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from services.notifier.domain.messages import Delivery
from shared.supervision import Supervisor
from tests.support.notifier import context, raised, roster
from tests.support.notifier_in_memory import RecordingSender, email_worker, plan, store_for


@dataclass
class HeldServer:
    """A server that takes in each message and answers once ``release`` is set."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    taking_in: asyncio.Event = field(default_factory=asyncio.Event)
    accepted: RecordingSender = field(default_factory=RecordingSender)

    async def send(self, delivery: Delivery) -> str:
        self.taking_in.set()
        await self.release.wait()
        return await self.accepted.send(delivery)


async def test_a_stop_lets_the_sends_in_flight_end_and_records_them_and_claims_nothing_new() -> (
    None
):
    ctx = context(roster())
    store, server = store_for(ctx), HeldServer()
    assert await plan(store, ctx, raised("S1")) == 2
    worker = email_worker(store, server, ctx)
    supervisor = Supervisor("test-stop-sends", check_every=0.01)
    supervisor.start("delivery-worker", worker.run)
    await asyncio.wait_for(server.taking_in.wait(), timeout=5)

    stopping = asyncio.create_task(supervisor.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # the sends in flight are waited for, not cancelled
    assert await plan(store, ctx, raised("S1")) == 2  # due while stopping
    worker.wake()
    server.release.set()
    await asyncio.wait_for(stopping, timeout=5)

    rows = store.outbox()
    assert [row.status for row in rows] == ["sent", "sent", "pending", "pending"]
    assert [row.attempts for row in rows] == [1, 1, 0, 0]  # nothing claimed once stopping
    assert len(server.accepted.sent) == 2


async def test_a_stop_waits_no_longer_than_the_send_timeout_and_records_the_attempt() -> None:
    ctx = context(roster())
    store, server = store_for(ctx), HeldServer()  # never answers
    assert await plan(store, ctx, raised("S1")) == 2
    worker = email_worker(store, server, ctx, send_timeout_seconds=0.2)
    supervisor = Supervisor("test-stop-bound", check_every=0.01)
    supervisor.start("delivery-worker", worker.run)
    await asyncio.wait_for(server.taking_in.wait(), timeout=5)

    await asyncio.wait_for(supervisor.stop(), timeout=worker.stop_within_seconds)

    rows = store.outbox()
    assert [(row.status, row.attempts) for row in rows] == [("pending", 1), ("pending", 1)]
    assert all("VIGIL_NOTIFIER_SEND_TIMEOUT_SECONDS" in (row.last_error or "") for row in rows)
    assert server.accepted.sent == []
