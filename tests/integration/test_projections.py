"""Projections rebuilt from the log equal the live ones."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from services.safety_rules.adapters.postgres import PostgresRulesUnitOfWork
from services.safety_rules.adapters.rule_pack_files import load_rule_packs
from services.safety_rules.adapters.subject_state_projection import SubjectStateProjection
from services.safety_rules.handlers.facts import handle_batch
from shared.db.pool import create_pool
from shared.events import Envelope, LabResultReported, SubjectEnrolled, wrap
from shared.projections import ProjectionRunner
from tests.support.components import as_service_role
from tests.support.services import REPO

pytestmark = pytest.mark.integration
PACKS = load_rule_packs(REPO / "studies")
# thirteen facts, two supersessions, two signals (B, A), B, C, D flagged as not enrolled,
# and B's signal routed to its site when B is enrolled
EVENTS = 21


def enrolment(subject: str, day0: date) -> Envelope:
    return wrap(
        SubjectEnrolled(
            study_id="NCT05262686",
            subject_id=subject,
            site_id="PKUPH-01",
            sex="M",
            birth_date=date(1970, 1, 1),
            weight_kg=Decimal(70),
            day0=day0,
        ),
        source="/tests",
    )


def hb(subject: str, value: str | None, day: int, status: str = "F") -> Envelope:
    return wrap(
        LabResultReported(
            study_id="NCT05262686",
            subject_id=subject,
            loinc_code="718-7",
            value=None if value is None else Decimal(value),
            unit=None if value is None else "g/dL",
            collected_at=datetime(2026, 3, day, 8, tzinfo=UTC),
            result_status=status,
            source_message_id=f"{subject}-{day}-{status}",
            observation_key=f"{subject}-{day}",
        ),
        source="/tests",
    )


async def snapshot(pool: asyncpg.Pool) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """The documents and the entries kept beside them."""
    documents = await pool.fetch(
        "SELECT study_id, subject_id, state::text AS state, position FROM subject_state "
        "ORDER BY study_id, subject_id"
    )
    entries = await pool.fetch(
        "SELECT event_id, study_id, subject_id, analyte, collected_at, entry::text AS entry "
        "FROM subject_results ORDER BY event_id"
    )
    return [tuple(r) for r in documents], [tuple(r) for r in entries]


async def state_of(pool: asyncpg.Pool, subject: str) -> dict[str, Any]:
    text = await pool.fetchval(
        "SELECT state::text FROM subject_state WHERE subject_id = $1", subject
    )
    state: dict[str, Any] = json.loads(text)
    return state


async def test_replay_equals_live(fresh_dsn: str) -> None:
    pool = await create_pool(as_service_role(fresh_dsn))
    runner = ProjectionRunner(pool, SubjectStateProjection(), batch_size=3)
    try:
        batches = [
            [enrolment("A", date(2026, 3, 2)), hb("A", "12.5", 1), hb("B", "8.2", 3)],
            [hb("A", "8.8", 20), enrolment("B", date(2026, 3, 1))],
            [hb("A", "11.0", 10)],  # late, older than the latest
            [hb("C", "12.0", 1), hb("C", "12.2", 5), hb("D", "11.5", 2), hb("D", "11.9", 9)],
            [hb("C", None, 5, status="X"), enrolment("D", date(2026, 3, 4))],  # the latest
            # withdrawn; Day 0 known after the results
            [hb("C", "12.8", 1, status="C")],  # a correction of what is now the latest
        ]
        for batch in batches:
            async with pool.acquire() as connection, connection.transaction():
                await handle_batch(batch, PostgresRulesUnitOfWork(connection), PACKS)
            await runner.catch_up()  # live: applied as the batches arrive
        live = await snapshot(pool)

        rebuilt_from = await runner.rebuild()

        assert rebuilt_from == EVENTS
        assert await snapshot(pool) == live
        assert await runner.position() == EVENTS
        state_a = await state_of(pool, "A")
        assert state_a["latest"]["718-7"]["value"] == 8.8
        assert state_a["baseline"]["718-7"]["value"] == 12.5
        assert "results" not in state_a
        state_c = await state_of(pool, "C")
        assert state_c["latest"]["718-7"]["value"] == 12.8
        state_d = await state_of(pool, "D")
        assert state_d["baseline"]["718-7"]["value"] == 11.5
        assert state_d["latest"]["718-7"]["value"] == 11.9
        assert len(live[1]) == 7  # A: 3, B: 1, C: the correction, D: 2
    finally:
        await pool.close()


async def test_vigil_replay_command(fresh_dsn: str) -> None:
    connection = await asyncpg.connect(fresh_dsn)
    try:
        async with connection.transaction():
            await handle_batch(
                [enrolment("C", date(2026, 3, 2)), hb("C", "12.5", 1)],
                PostgresRulesUnitOfWork(connection),
                PACKS,
            )
    finally:
        await connection.close()
    env = {"VIGIL_DATABASE_URL": as_service_role(fresh_dsn), "PATH": "/usr/bin:/bin"}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "vigil", "replay", "subject_state"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "rebuilt subject_state from 2 event(s)" in done.stdout
    unknown = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "vigil", "replay", "nothing"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unknown.returncode == 2
    assert "known: subject_state" in unknown.stderr
