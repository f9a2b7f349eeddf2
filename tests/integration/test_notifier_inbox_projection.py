"""`vigil notifier` as a process keeps the workspace inbox: its projection is a supervised
task (in /tasks, hence in /readyz), and a signal appended to the audit log by someone
else (the rules service) reaches the inbox without any message on the broker."""

from __future__ import annotations

import asyncpg
import pytest

from shared.eventstore import NewEvent, append
from tests.support.acknowledgement_stack import AcknowledgementStack, raised_now
from tests.support.notifier import signal_of
from tests.support.services import METRICS_TOKEN
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


async def test_the_notifier_projects_the_audit_log_into_the_inbox(
    notifier: AcknowledgementStack, notifier_db: asyncpg.Pool
) -> None:
    signal = raised_now()
    async with notifier_db.acquire() as connection, connection.transaction():
        await append(connection, [NewEvent(signal)])

    async def in_the_inbox() -> str | None:
        state: str | None = await notifier_db.fetchval(
            "SELECT state FROM signal_inbox WHERE signal_id = $1", signal_of(signal).signal_id
        )
        return state

    assert await eventually(in_the_inbox, timeout=30, what="the signal in the inbox") == "open"
    async with notifier.client() as client:
        tasks = await client.get("/tasks", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    states = {task["task"]: task["state"] for task in tasks.json()["tasks"]}
    assert states["projection.signal_inbox"] == "running"
