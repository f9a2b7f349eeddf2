"""Findings of an outside review (break13): a row moved to another subject, and a broker
that comes back with other partition counts.

Vigil promises that ``vigil audit verify`` finds any alteration of the audit log, and that
a subject's export holds its whole history; and that a result reaching ingest is judged
(or the service says, in ``/readyz``, that it cannot), whatever the broker forgot.
"""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest

from shared.eventstore import NewEvent, append
from tests.integration.test_audit_cli import vigil
from tests.integration.test_event_store import result, tamper

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
