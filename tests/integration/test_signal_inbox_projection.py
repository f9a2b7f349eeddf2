"""The inbox read model on a real PostgreSQL: fed live it equals itself rebuilt from
position 0, and what is appended after a rebuild is picked up."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from services.notifier.adapters.signal_inbox import SignalInboxProjection
from shared.db.pool import create_pool
from shared.events import Envelope, EventPayload, SafetySignalResolved, wrap
from shared.events.notifications import (
    NotificationEscalated,
    NotificationOpened,
    Recipient,
    SignalAcknowledged,
)
from shared.eventstore import NewEvent, append
from shared.projections import ProjectionRunner
from tests.support.components import as_service_role
from tests.support.notifier import T0, lifecycle, raised, signal_of

pytestmark = pytest.mark.integration
DEADLINE = T0 + timedelta(hours=24)


@pytest.fixture
async def service_pool(fresh_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool as the services' role: the projection needs no more rights than they have."""
    pool = await create_pool(as_service_role(fresh_dsn))
    try:
        yield pool
    finally:
        await pool.close()


def notice(signal: Envelope) -> dict[str, object]:
    payload = signal_of(signal)
    return {
        "study_id": payload.study_id,
        "subject_id": payload.subject_id,
        "signal_id": payload.signal_id,
    }


def opened(signal: Envelope) -> NotificationOpened:
    return NotificationOpened(
        **notice(signal), site_id=signal_of(signal).site_id, severity="protocol-threshold",
        serious=False, grade=None, raised_at=T0,
        recipients=(Recipient(person_id="pi1", role="investigator"),), acknowledge_by=DEADLINE,
    )  # fmt: skip


async def record(pool: asyncpg.Pool, *events: Envelope | EventPayload) -> None:
    envelopes = [e if isinstance(e, Envelope) else wrap(e, source="/test") for e in events]
    async with pool.acquire() as connection, connection.transaction():
        await append(connection, [NewEvent(envelope) for envelope in envelopes])


async def snapshot(pool: asyncpg.Pool) -> list[tuple[object, ...]]:
    rows = await pool.fetch("SELECT * FROM signal_inbox ORDER BY signal_id")
    return [tuple(row) for row in rows]


async def test_the_inbox_fed_live_equals_the_inbox_rebuilt_from_position_zero(
    service_pool: asyncpg.Pool,
) -> None:
    runner = ProjectionRunner(service_pool, SignalInboxProjection(), batch_size=2)
    first, second, third = raised("S1"), raised("S2"), raised(None)
    batches: list[list[Envelope | EventPayload]] = [
        [first, opened(first)],
        [second, opened(second), third],
        [
            NotificationEscalated(
                **notice(first), level=1, overdue_since=DEADLINE, recipients=(),
                acknowledge_by=DEADLINE + timedelta(hours=24),
            ),
            SignalAcknowledged(
                **notice(second), person_id="pi2", role="investigator",
                assessment="not-clinically-significant", token_id="t",
            ),
        ],
        [
            SafetySignalResolved(
                **lifecycle(signal_of(third)), reason="back in range",
                input_event_ids=(), collected_at=T0 + timedelta(days=2),
            )
        ],
    ]  # fmt: skip
    for batch in batches:
        await record(service_pool, *batch)
        await runner.catch_up()
    live = await snapshot(service_pool)
    assert await runner.skipped() == 0  # no event was set aside while fed live

    replayed = await runner.rebuild()

    assert replayed == 8
    assert await runner.skipped() == 0
    assert await snapshot(service_pool) == live
    states = dict(await service_pool.fetch("SELECT signal_id, state FROM signal_inbox"))
    assert states == {
        signal_of(first).signal_id: "open",
        signal_of(second).signal_id: "acknowledged",
        signal_of(third).signal_id: "resolved",
    }
    level = await service_pool.fetchval(
        "SELECT escalation_level FROM signal_inbox WHERE signal_id = $1", signal_of(first).signal_id
    )
    assert level == 1


async def test_a_signal_appended_after_a_rebuild_is_picked_up(service_pool: asyncpg.Pool) -> None:
    runner = ProjectionRunner(service_pool, SignalInboxProjection())
    await record(service_pool, raised("S1"))
    await runner.rebuild()
    late = raised("S2")

    await record(service_pool, late, opened(late))
    await runner.catch_up()

    row = await service_pool.fetchrow(
        "SELECT state, site_id, acknowledge_by FROM signal_inbox WHERE signal_id = $1",
        signal_of(late).signal_id,
    )
    assert tuple(row) == ("open", "S2", DEADLINE)
    assert await service_pool.fetchval("SELECT count(*) FROM signal_inbox") == 2


async def test_vigil_replay_rebuilds_the_inbox(fresh_dsn: str, service_pool: asyncpg.Pool) -> None:
    runner = ProjectionRunner(service_pool, SignalInboxProjection())
    signal = raised("S1")
    await record(service_pool, signal, opened(signal))
    await runner.catch_up()
    live = await snapshot(service_pool)
    env = {"VIGIL_DATABASE_URL": as_service_role(fresh_dsn), "PATH": "/usr/bin:/bin"}

    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "vigil", "replay", "signal_inbox"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert "rebuilt signal_inbox from 2 event(s)" in done.stdout
    assert await snapshot(service_pool) == live
