"""An unreadable result on the real store: kept in the subject's stream, and its
data-quality issue bound for the data-quality topic, once."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest

from services.safety_rules.adapters.postgres import PostgresRulesUnitOfWork
from services.safety_rules.adapters.rule_pack_files import load_rule_packs
from services.safety_rules.handlers.facts import BatchOutcome, handle_batch
from shared.events import Envelope, LabResultUnreadable, wrap
from shared.events.topics import DATA_QUALITY
from tests.support.services import REPO

pytestmark = pytest.mark.integration
PACKS = load_rule_packs(REPO / "studies")


def unreadable() -> Envelope:
    payload = LabResultUnreadable(
        study_id="NCT05262686",
        subject_id="U-1",  # nobody enrolled this subject
        source_message_id="MSG-U",
        segment="OBX[2]",
        field="OBX-5",
        problem="the value is empty although the flags say abnormal",
        loinc_code="777-3",
        collected_at=datetime(2026, 6, 1, 9, tzinfo=UTC),
        abnormal_flags=("LL",),
    )
    return wrap(payload, source="/tests")


async def run_batch(connection: asyncpg.Connection, batch: list[Envelope]) -> BatchOutcome:
    async with connection.transaction():
        return await handle_batch(batch, PostgresRulesUnitOfWork(connection), PACKS)


async def test_an_unreadable_result_is_stored_and_its_issue_published_once(
    fresh_dsn: str,
) -> None:
    connection = await asyncpg.connect(fresh_dsn)
    try:
        event = unreadable()

        first = await run_batch(connection, [event])
        again = await run_batch(connection, [event])

        rows = await connection.fetch(
            "SELECT type, stream_id, payload->>'issue' AS issue, "
            "payload->>'related_event_id' AS related FROM events ORDER BY position"
        )
        assert (rows[0]["type"], rows[0]["stream_id"]) == (
            "org.vigil.lab_result.unreadable.v1",
            "subject-NCT05262686/U-1",
        )
        issues = {r["issue"]: r["related"] for r in rows if r["issue"]}
        assert issues == {
            "abnormal-result-unreadable": str(event.id),
            "unknown-subject": str(event.id),
        }
        outbox = await connection.fetch("SELECT event_id, topic FROM outbox")
        assert {r["topic"] for r in outbox} == {DATA_QUALITY}
        assert len(outbox) == len(first.data_quality) == 2
        assert (again.stored, again.data_quality) == (0, [])
    finally:
        await connection.close()
