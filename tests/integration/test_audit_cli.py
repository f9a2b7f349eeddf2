"""``vigil audit verify`` and ``vigil audit export`` as an inspector runs them."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from shared.eventstore import NewEvent, append
from tests.integration.test_event_store import result, tamper
from tests.support.components import as_service_role

pytestmark = pytest.mark.integration


async def vigil(*args: str, dsn: str, anchors: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "VIGIL_DATABASE_URL": as_service_role(dsn),
        "VIGIL_AUDIT_ANCHOR_FILE": str(anchors),
        "PATH": "/usr/bin:/bin",
    }
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "vigil", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_verify_prints_ok_then_the_first_broken_position(
    fresh_dsn: str, tmp_path: Path
) -> None:
    anchors = tmp_path / "anchors.jsonl"
    connection = await asyncpg.connect(fresh_dsn)
    try:
        async with connection.transaction():
            await append(connection, [NewEvent(result("S1", f"1{i}.0", n=i)) for i in range(5)])

        clean = await vigil("audit", "verify", dsn=fresh_dsn, anchors=anchors)
        assert clean.returncode == 0, clean.stderr
        assert "chain: 5 event(s) verified" in clean.stdout
        assert clean.stdout.strip().endswith("OK")

        await tamper(
            connection,
            'UPDATE events SET payload_json = replace(payload_json, \'"unit":"g/dL"\', '
            '\'"unit":"g/L"\') WHERE position = 2',
        )
        broken = await vigil("audit", "verify", "--full", dsn=fresh_dsn, anchors=anchors)
        assert broken.returncode == 1
        assert "chain BROKEN at position 2" in broken.stdout
        assert "latest at position 5" in broken.stdout
        assert broken.stdout.strip().endswith("FAILED")
    finally:
        await connection.close()


async def test_verify_run_twice_reports_a_row_altered_after_a_clean_verify(
    fresh_dsn: str, tmp_path: Path
) -> None:
    anchors = tmp_path / "anchors.jsonl"
    connection = await asyncpg.connect(fresh_dsn)  # the owner: it may switch triggers off
    try:
        async with connection.transaction():
            await append(connection, [NewEvent(result("S1", f"1{i}.0", n=i)) for i in range(7)])
        clean = await vigil("audit", "verify", dsn=fresh_dsn, anchors=anchors)
        assert clean.returncode == 0, clean.stderr  # and it anchors the head, position 7
        assert "anchored head at position 7" in clean.stdout

        await tamper(
            connection,
            "UPDATE events SET payload_json = replace(payload_json, '\"value\":13', "
            "'\"value\":31') WHERE position = 4",
        )
        first = await vigil("audit", "verify", dsn=fresh_dsn, anchors=anchors)
        second = await vigil("audit", "verify", dsn=fresh_dsn, anchors=anchors)
        scripted = await vigil("audit", "verify", "--full", dsn=fresh_dsn, anchors=anchors)

        for run in (first, second, scripted):
            assert run.returncode == 1, run.stdout
            assert "chain BROKEN at position 4" in run.stdout
            assert run.stdout.strip().endswith("FAILED")
        # the quick check trusts what the last clean verify anchored, and says so
        quick = await vigil("audit", "verify", "--from-anchor", dsn=fresh_dsn, anchors=anchors)
        assert "positions 1..7 were NOT re-hashed" in quick.stdout
        assert "run without --from-anchor" in quick.stdout
    finally:
        await connection.close()


async def test_export_command_writes_the_subject_history(fresh_dsn: str, tmp_path: Path) -> None:
    connection = await asyncpg.connect(fresh_dsn)
    try:
        async with connection.transaction():
            await append(
                connection,
                [NewEvent(result(f"S{i % 2}", "12.0", n=i)) for i in range(4)],
            )
    finally:
        await connection.close()
    out = tmp_path / "export.jsonl"

    done = await vigil(
        "audit",
        "export",
        "--study",
        "NCT05262686",
        "--subject",
        "S1",
        "--output",
        str(out),
        dsn=fresh_dsn,
        anchors=tmp_path / "a.jsonl",
    )

    assert done.returncode == 0, done.stderr
    assert "exported 2 event(s)" in done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["subject_id"] for row in rows] == ["S1", "S1"]
    bad = await vigil(
        "audit", "export", "--study", "X", "--format", "xml", dsn=fresh_dsn, anchors=out
    )
    assert bad.returncode == 2
