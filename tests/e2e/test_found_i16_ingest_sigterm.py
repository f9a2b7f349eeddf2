"""Found while breaking issue 16's shared supervision from outside: SIGTERM to the real
ingest service while senders keep posting. What ingest answered 202 for is owed to the
audit log: after a restart every such result is there, the stop itself is clean (in
time, nothing in the log an operator is paged for) and no request in flight got a 5xx."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.integration.test_found_i16_shutdown import complaints, sigterm
from tests.support.private_stack import Stack, private_stack
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
SENDERS = 4


def lab(subject: str, message_id: str) -> dict[str, object]:
    return {
        "subject_id": subject, "loinc_code": "718-7", "value": 12.5, "unit": "g/dL",
        "collected_at": "2026-11-20T08:30:00+00:00", "source_message_id": message_id,
    }  # fmt: skip


async def keep_sending(
    stack: Stack, subject: str, accepted: list[str], answers: list[int], stop: asyncio.Event
) -> None:
    async with httpx.AsyncClient(base_url=stack.url("ingest"), timeout=30) as client:
        while not stop.is_set():
            message_id = f"LAB-{uuid.uuid4().hex[:12]}"
            try:
                answer = await client.post(
                    "/v1/lab-results", json=lab(subject, message_id), headers=stack.headers
                )
            except httpx.TransportError:
                await asyncio.sleep(0.05)  # ingest is away: what was not answered is not owed
                continue
            answers.append(answer.status_code)
            if answer.status_code == 202:
                accepted.append(message_id)


async def test_sigterm_while_posting_loses_no_accepted_result(
    tmp_path: Path, fresh_dsn: str
) -> None:
    subject = f"01-{uuid.uuid4().hex[:4]}"
    async with private_stack(tmp_path, fresh_dsn) as stack:
        await stack.enrol(subject)
        accepted: list[str] = []
        answers: list[int] = []
        stop = asyncio.Event()
        senders = [
            asyncio.create_task(keep_sending(stack, subject, accepted, answers, stop))
            for _ in range(SENDERS)
        ]
        try:
            await eventually(
                lambda: asyncio.sleep(0, len(accepted) >= 20), timeout=60, what="20 accepted"
            )
            status, took = await sigterm(stack.processes["ingest"])
        finally:
            stop.set()
            await asyncio.gather(*senders)

        assert status in (0, -signal.SIGTERM), f"ingest exited with {status}"
        assert took < 15, f"ingest took {took:.1f} s to stop"
        assert [code for code in answers if code >= 500] == []
        assert complaints(tmp_path / "ingest.log") == []

        stack.processes.pop("ingest")
        stack.start("ingest", "ingest")
        connection = await asyncpg.connect(fresh_dsn)
        try:

            async def missing() -> set[str]:
                rows = await connection.fetch(
                    "SELECT payload->>'source_message_id' AS id FROM events "
                    "WHERE type = 'org.vigil.lab_result.reported.v1' AND subject_id = $1",
                    subject,
                )
                return set(accepted) - {row["id"] for row in rows}

            async def none_missing() -> bool:
                return not await missing()

            try:
                await eventually(none_missing, timeout=120, what="every accepted result stored")
            except AssertionError:
                lost = await missing()
                raise AssertionError(f"{len(lost)} of {len(accepted)} accepted lost") from None
        finally:
            await connection.close()
