"""Found while breaking issue 16's shared supervision from outside: SIGTERM to the real
rules service while it is consuming batches of lab results. An operator expects a clean
stop (in time, nothing in the log an operator is paged for: the pool must outlive the
batch in flight) and, after a restart, every result in the audit log exactly once."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import asyncpg
import pytest

from tests.integration.test_found_i16_shutdown import complaints, sigterm
from tests.support.private_stack import private_stack
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
SUBJECTS = 20
RESULTS = 1500
CHUNK = 25


async def test_sigterm_mid_batch_stops_the_rules_cleanly_and_loses_nothing(
    tmp_path: Path, fresh_dsn: str
) -> None:
    run = uuid.uuid4().hex[:4]
    subjects = [f"01-{run}{i:02d}" for i in range(SUBJECTS)]
    async with private_stack(tmp_path, fresh_dsn) as stack:
        enrolled = await stack.post(
            "/v1/subjects",
            [
                {"subject_id": s, "site_id": "PKUPH-01", "sex": "F",
                 "birth_date": "1980-01-01", "day0": "2026-01-01"}
                for s in subjects
            ],
        )  # fmt: skip
        assert enrolled.status_code == 202, enrolled.text
        results = [
            {"subject_id": subjects[i % SUBJECTS], "loinc_code": "718-7", "value": 12.5,
             "unit": "g/dL", "collected_at": f"2026-11-{1 + i % 28:02d}T08:{i % 60:02d}:00+00:00",
             "source_message_id": f"LAB-{run}-{i}"}
            for i in range(RESULTS)
        ]  # fmt: skip
        connection = await asyncpg.connect(fresh_dsn)
        try:

            async def stored() -> int:
                count: int = await connection.fetchval(
                    "SELECT count(*) FROM events WHERE type = 'org.vigil.lab_result.reported.v1'"
                )
                return count

            async def send_all() -> None:
                for start in range(0, RESULTS, CHUNK):
                    answer = await stack.post("/v1/lab-results", results[start : start + CHUNK])
                    assert answer.status_code == 202, answer.text

            sending = asyncio.create_task(send_all())
            await eventually(stored, timeout=60, what="the rules storing the first results")
            status, took = await sigterm(stack.processes["safety_rules"])
            await sending
            at_stop = await stored()
            assert at_stop < RESULTS, "the stop came too late to test anything"

            assert status in (0, -signal.SIGTERM), f"the rules service exited with {status}"
            assert took < 15, f"the rules service took {took:.1f} s to stop"
            assert complaints(tmp_path / "safety_rules.log") == []

            stack.processes.pop("safety_rules")
            stack.start("safety_rules", "rules")

            async def all_stored() -> bool:
                return await stored() == RESULTS

            await eventually(all_stored, timeout=120, what="every result in the audit log")
            duplicates = await connection.fetchval(
                "SELECT count(*) - count(DISTINCT payload->>'source_message_id') FROM events "
                "WHERE type = 'org.vigil.lab_result.reported.v1'"
            )
            assert duplicates == 0
        finally:
            await connection.close()
