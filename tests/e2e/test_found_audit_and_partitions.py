"""Findings of an outside review (break13): a row moved to another subject, and a broker
that comes back with other partition counts.

Vigil promises that ``vigil audit verify`` finds any alteration of the audit log, and that
a subject's export holds its whole history; and that a result reaching ingest is judged
(or the service says, in ``/readyz``, that it cannot), whatever the broker forgot.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import asyncpg
import pytest

from shared.eventstore import NewEvent, append
from tests.integration.test_audit_cli import vigil
from tests.integration.test_event_store import result, tamper
from tests.support.private_stack import private_stack
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

STUDY = "NCT05262686"


async def test_verify_finds_a_row_moved_to_another_subject(fresh_dsn: str, tmp_path: Path) -> None:
    """study_id and subject_id are stored beside the hashed envelope, not hashed themselves:
    editing them (triggers off, as the schema owner may) moves a row out of its subject's
    history. Verify finds the edit, and the subject's export still holds the row, since it
    selects by what the hash covers."""
    anchors = tmp_path / "anchors.jsonl"
    connection = await asyncpg.connect(fresh_dsn)  # the schema owner: may switch triggers off
    try:
        async with connection.transaction():
            await append(connection, [NewEvent(result("S1", f"1{i}.0", n=i)) for i in range(4)])
        clean = await vigil("audit", "verify", dsn=fresh_dsn, anchors=anchors)
        assert clean.returncode == 0, clean.stderr

        # hide subject S1's result at position 2 from its history: no hashed byte changes
        await tamper(
            connection,
            "UPDATE events SET subject_id = 'S9', study_id = 'OTHER' WHERE position = 2",
        )
        out = tmp_path / "s1.jsonl"
        exported = await vigil(
            "audit", "export", "--study", STUDY, "--subject", "S1", "--output", str(out),
            dsn=fresh_dsn, anchors=anchors,
        )  # fmt: skip
        assert exported.returncode == 0, exported.stderr
        records = [json.loads(line) for line in out.read_text().splitlines()]
        verified = await vigil("audit", "verify", dsn=fresh_dsn, anchors=anchors)

        assert verified.returncode == 1, verified.stdout
        assert "chain BROKEN at position 2" in verified.stdout
        assert [record["position"] for record in records] == [1, 2, 3, 4]
        assert {(r["study_id"], r["subject_id"]) for r in records} == {(STUDY, "S1")}
        assert "altered" in exported.stderr
        assert "position(s) 2 " in exported.stderr
    finally:
        await connection.close()


async def test_after_a_broker_restart_with_default_partitions_results_are_still_judged(
    tmp_path: Path, fresh_dsn: str
) -> None:
    """The development broker forgets every topic on a restart, and a producer's metadata
    request may re-create one with the broker's default partition count (4 for Tansu), not
    VIGIL_KAFKA_PARTITIONS (6 here). The rules consumer still held partitions 4 and 5, and
    aiokafka retried committing their offsets for ever: nothing was judged again while
    /readyz stayed green. Results sent after the restart are judged."""
    async with private_stack(tmp_path, fresh_dsn, VIGIL_KAFKA_PARTITIONS="6") as stack:
        await stack.enrol("BEFORE-1")
        await stack.haemoglobin("BEFORE-1")
        await stack.wait_for_alert("BEFORE-1", timeout=60)

        stack.broker.stop()  # the development broker forgets everything
        stack.broker.start()

        subjects = [f"AFTER-{i}" for i in range(6)]

        async def accepted() -> bool:
            try:
                for subject in subjects:
                    await stack.enrol(subject)
                    await stack.haemoglobin(subject)
            except AssertionError:
                return False  # 503 while the producer reconnects: the sender sends again
            return True

        await eventually(accepted, timeout=60, what="ingest accepting again")
        missing = []
        deadline = time.monotonic() + 180
        for subject in subjects:
            try:
                await stack.wait_for_alert(subject, timeout=max(deadline - time.monotonic(), 1))
            except AssertionError:
                missing.append(subject)
        status, body = await stack.ready("rules")
        assert not missing, (
            f"no alert for {missing} within 3 minutes of the broker restart; "
            f"rules /readyz answered {status} {body}"
        )
