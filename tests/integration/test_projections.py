"""Projections rebuilt from the log equal the live ones."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import Decimal

import asyncpg
import pytest

from services.safety_rules.adapters.postgres import PostgresRulesUnitOfWork
from services.safety_rules.domain.rule_pack import load_rule_packs
from services.safety_rules.handlers import handle_batch
from services.safety_rules.projections.subject_state import SubjectStateProjection
from shared.db.pool import create_pool
from shared.events import Envelope, LabResultReported, SubjectEnrolled, wrap
from shared.projections import ProjectionRunner
from tests.support.components import as_service_role
from tests.support.services import REPO

pytestmark = pytest.mark.integration
PACKS = load_rule_packs(REPO / "studies")


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


def hb(subject: str, value: str, day: int) -> Envelope:
    return wrap(
        LabResultReported(
            study_id="NCT05262686",
            subject_id=subject,
            loinc_code="718-7",
            value=Decimal(value),
            unit="g/dL",
            collected_at=datetime(2026, 3, day, 8, tzinfo=UTC),
            source_message_id=f"{subject}-{day}",
        ),
        source="/tests",
    )


async def snapshot(pool: asyncpg.Pool) -> list[tuple[str, str, str, int]]:
    rows = await pool.fetch(
        "SELECT study_id, subject_id, state::text AS state, position FROM subject_state "
        "ORDER BY study_id, subject_id"
    )
    return [(r["study_id"], r["subject_id"], r["state"], r["position"]) for r in rows]


async def test_replay_equals_live(fresh_dsn: str) -> None:
    pool = await create_pool(as_service_role(fresh_dsn))
    runner = ProjectionRunner(pool, SubjectStateProjection(), batch_size=3)
    try:
        batches = [
            [enrolment("A", date(2026, 3, 2)), hb("A", "12.5", 1), hb("B", "8.2", 3)],
            [hb("A", "8.8", 20), enrolment("B", date(2026, 3, 1))],
            [hb("A", "11.0", 10)],  # late, older than the latest
        ]
        for batch in batches:
            async with pool.acquire() as connection, connection.transaction():
                await handle_batch(batch, PostgresRulesUnitOfWork(connection), PACKS)
            await runner.catch_up()  # live: applied as the batches arrive
        live = await snapshot(pool)

        rebuilt_from = await runner.rebuild()

        assert rebuilt_from == 9  # six facts, two signals, B flagged as not yet enrolled
        assert await snapshot(pool) == live
        assert await runner.position() == 9
        state_a = await pool.fetchval("SELECT state FROM subject_state WHERE subject_id = 'A'")
        assert '"718-7"' in state_a
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
