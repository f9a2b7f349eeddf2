"""SIGKILL of a delivery worker in the middle of a batch loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter

import asyncpg
import pytest

from services.notifier.adapters.deliveries import add_deliveries
from services.notifier.domain.deliveries import compose
from services.notifier.domain.messages import content_for_signal
from shared.events import SafetySignalRaised
from tests.support.components import as_service_role
from tests.support.mail import SlowCatcher, start_smtp_server
from tests.support.notifier import raised
from tests.support.services import REPO
from tests.support.waiting import eventually
from vigil.devstack.ports import free_port

pytestmark = pytest.mark.integration
MESSAGES = 30


def start_worker(dsn: str, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.delivery_process", dsn, str(port), "2"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == b"ready"
    return process


async def test_sigkill_mid_batch_loses_nothing(fresh_dsn: str) -> None:
    port = free_port()
    controller, mailbox = start_smtp_server(port, SlowCatcher(delay=0.2))
    signal_payload = raised("S1").payload()
    assert isinstance(signal_payload, SafetySignalRaised)
    content = content_for_signal(signal_payload)
    deliveries = [
        compose(
            content,
            purpose="raised",
            person_id=f"p{i}",
            channel="email",
            address=f"p{i}@x.org",
            link=None,
        )
        for i in range(MESSAGES)
    ]
    connection = await asyncpg.connect(fresh_dsn)
    try:
        await add_deliveries(connection, deliveries, give_up_after_seconds=600)
        dsn = as_service_role(fresh_dsn)
        first = start_worker(dsn, port)
        try:
            await eventually(
                lambda: asyncio.sleep(0, len(mailbox.received) >= 5), timeout=60, what="5 mails"
            )
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        killed_after = len(mailbox.received)
        assert killed_after < MESSAGES, "the kill came too late to test anything"
        second = start_worker(dsn, port)
        try:
            await eventually(
                lambda: connection.fetchval(
                    "SELECT count(*) = $1 FROM deliveries WHERE status = 'sent'", MESSAGES
                ),
                timeout=60,
                what="every delivery sent",
            )
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait()
        per_id = Counter(str(m.message["Message-ID"]) for m in mailbox.received)
        assert set(per_id) == {d.message_id for d in deliveries}  # nothing lost
        repeated = {mid for mid, n in per_id.items() if n > 1}
        # a repeat happens only for a message the killed worker had sent but not recorded,
        # and it carries the same Message-ID; the stream shows the two attempts
        attempts = await connection.fetch(
            """SELECT payload->>'message_id' AS mid, count(*) AS n FROM events
               WHERE type LIKE '%delivery_attempted%' GROUP BY 1"""
        )
        twice = {row["mid"] for row in attempts if row["n"] > 1}
        assert repeated <= twice
        print(f"killed after {killed_after}: {len(repeated)} repeated, {len(twice)} re-attempted")
    finally:
        await connection.close()
        controller.stop()
