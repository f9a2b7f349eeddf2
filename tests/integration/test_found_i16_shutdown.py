"""Found while breaking issue 16's shared supervision from outside: SIGTERM to the real
notifier process while it is sending mail. An operator expects the stop to be clean (exit
status 0 well within the supervisor's grace, no error or traceback in the log: the pool
must not close under a send), and after a restart nothing lost and nothing sent twice
but under the same Message-ID."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from services.notifier.adapters.postgres import add_deliveries
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

pytestmark = pytest.mark.integration
MESSAGES = 45


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
        running_smtp_server(SlowCatcher(delay=1.0)) as (smtp_port, mailbox),
    ):
        try:
            await add_deliveries(connection, deliveries, give_up_after_seconds=3600)
            port = free_port()
            env = service_env(
                database_url=as_service_role(fresh_dsn),
                kafka_bootstrap=bootstrap,
                smtp_port=smtp_port,
                VIGIL_NOTIFIER_PORT=str(port),
            )
            first_logs, second_logs = tmp_path / "first", tmp_path / "second"
            first_logs.mkdir()
            second_logs.mkdir()
            first = start_service("notifier", "notifier", port, env, first_logs)
            try:
                await eventually(
                    lambda: asyncio.sleep(0, len(mailbox.received) >= 1),
                    timeout=90,
                    what="a mail sent",
                )
                assert first.process is not None
                began = time.monotonic()
                first.process.send_signal(signal.SIGTERM)
                status = await asyncio.to_thread(first.process.wait, 30)
                took = time.monotonic() - began
            finally:
                first.stop()
            assert len(mailbox.received) < MESSAGES, "the stop came too late to test anything"

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
            # sent twice only when the stop cut a send short: at most the sends in flight
            assert sum(per_id.values()) - MESSAGES <= 1, per_id
        finally:
            await connection.close()
