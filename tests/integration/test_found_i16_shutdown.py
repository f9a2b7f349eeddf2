"""Found while breaking issue 16's shared supervision from outside: SIGTERM to the real
notifier process while the SMTP server is taking in its messages. An operator expects the
stop to be clean (in time, no error or traceback in the log: the pool must not close under
a send) and nothing lost after a restart; both hold. And a routine stop (a deploy) should
let the sends in flight end and record them, so that nobody gets an alert twice and no
alert waits for a lease to run out: today the stop cancels them, the server has the
messages already, and after the restart each is sent again (same Message-ID) once its
lease (twice the send timeout plus 5 s) has run out."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.notifier.adapters.deliveries import add_deliveries
from services.notifier.domain.deliveries import compose
from services.notifier.domain.messages import content_for_signal
from shared.events import SafetySignalRaised
from tests.support import components
from tests.support.components import as_service_role
from tests.support.mail import SlowCatcher, running_smtp_server
from tests.support.notifier import raised
from tests.support.services import service_env, start_service
from tests.support.waiting import eventually
from vigil.devstack.ports import free_port
from vigil.devstack.supervisor import ManagedProcess

pytestmark = pytest.mark.integration
MESSAGES = 30


async def sigterm(process: ManagedProcess) -> tuple[int, float]:
    """SIGTERM to a service's process: its exit status and how long it took to stop."""
    assert process.process is not None
    began = time.monotonic()
    process.process.send_signal(signal.SIGTERM)
    status = await asyncio.to_thread(process.process.wait, 30)
    return status, time.monotonic() - began


@dataclass
class CountingCatcher(SlowCatcher):
    """A slow server that counts the messages whose DATA it has begun taking in."""

    started: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.started += 1
        return await super().handle_DATA(server, session, envelope)


def complaints(log: Path) -> list[str]:
    """The log lines an operator would be paged for: errors, and any traceback."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            if "Traceback" in line or "Error" in line:
                found.append(line)
            continue
        if not isinstance(entry, dict):
            continue
        level = str(entry.get("level", "")).lower()
        if level in ("error", "critical", "exception") or "Traceback" in line:
            found.append(line[:400])
    return found


async def test_sigterm_while_sending_stops_cleanly_and_loses_nothing(
    fresh_dsn: str, tmp_path: Path
) -> None:
    signal_payload = raised("S1").payload()
    assert isinstance(signal_payload, SafetySignalRaised)
    content = content_for_signal(signal_payload)
    deliveries = [
        compose(
            content, purpose="raised", person_id=f"p{i}", channel="email",
            address=f"p{i}@x.org", link=None,
        )
        for i in range(MESSAGES)
    ]  # fmt: skip
    connection = await asyncpg.connect(fresh_dsn)
    with (
        components.kafka() as bootstrap,
        running_smtp_server(CountingCatcher(delay=3.0)) as (smtp_port, mailbox),
    ):
        try:
            await add_deliveries(connection, deliveries, give_up_after_seconds=3600)
            port = free_port()
            env = service_env(
                database_url=as_service_role(fresh_dsn),
                kafka_bootstrap=bootstrap,
                smtp_port=smtp_port,
                VIGIL_NOTIFIER_PORT=str(port),
                VIGIL_NOTIFIER_SEND_TIMEOUT_SECONDS="5",  # a lease of 15 s
            )
            first_logs, second_logs = tmp_path / "first", tmp_path / "second"
            first_logs.mkdir()
            second_logs.mkdir()
            first = start_service("notifier", "notifier", port, env, first_logs)
            try:
                await eventually(
                    lambda: asyncio.sleep(0, mailbox.started >= 1),
                    timeout=90,
                    what="a message being taken in",
                )
                received_before = len(mailbox.received)
                status, took = await sigterm(first)
            finally:
                first.stop()
            assert received_before == 0, "the stop came too late to test anything"

            # a clean stop: in time, by the signal (uvicorn re-raises it once it has shut
            # down) or with 0, and nothing in the log an operator is paged for
            assert status in (0, -signal.SIGTERM), f"the notifier exited with {status}"
            assert took < 15, f"the notifier took {took:.1f} s to stop"
            assert complaints(first_logs / "notifier.log") == []

            second = start_service("notifier", "notifier", port, env, second_logs)
            try:
                await eventually(
                    lambda: connection.fetchval(
                        "SELECT count(*) = $1 FROM deliveries WHERE status = 'sent'", MESSAGES
                    ),
                    timeout=120,
                    what="every delivery sent after the restart",
                )
            finally:
                second.stop()
            per_id = Counter(str(m.message["Message-ID"]) for m in mailbox.received)
            assert set(per_id) == {d.message_id for d in deliveries}  # nothing lost
            # a stop is no crash: what was in flight ended and was recorded
            twice = sorted(mid for mid, n in per_id.items() if n > 1)
            assert twice == [], f"{len(twice)} of {MESSAGES} messages sent twice"
        finally:
            await connection.close()
