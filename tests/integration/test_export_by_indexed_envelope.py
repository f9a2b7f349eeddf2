"""The export finds a study's or a subject's rows through the index of migration 0019 (the
attributes of the generated ``envelope`` column, so no insert parses the envelope text
again), and keeps selecting and naming them by what the hashed text says."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest

from shared import eventstore
from shared.events import Envelope, LabResultReported, wrap
from shared.eventstore import NewEvent
from shared.eventstore.export import export_query, read_export, row_hash_matches, write_export

pytestmark = pytest.mark.integration


def result(study: str, subject: str, n: int) -> Envelope:
    payload = LabResultReported(
        study_id=study,
        subject_id=subject,
        loinc_code="718-7",
        value=Decimal("12.5"),
        unit="g/dL",
        collected_at=datetime(2026, 6, 1, 9, n, tzinfo=UTC),
        source_message_id=f"EXPORT-{study}-{subject}-{n}",
    )
    return wrap(payload, source="/tests")


@pytest.fixture
async def db(fresh_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(fresh_dsn)
    try:
        async with connection.transaction():
            await eventstore.append(
                connection,
                [
                    NewEvent(result(study, subject, n))
                    for n in range(4)
                    for study in ("NCT1", "NCT2")
                    for subject in ("S1", "S2")
                ],
            )
        yield connection
    finally:
        await connection.close()


@pytest.mark.parametrize("by_subject", [False, True])
async def test_the_export_reads_through_the_index_on_the_generated_envelope(
    db: asyncpg.Connection, by_subject: bool
) -> None:
    arguments = ["NCT1", "S2"] if by_subject else ["NCT1"]
    async with db.transaction():
        await db.execute("SET LOCAL enable_seqscan = off")  # a tiny table is read whole
        plan = "\n".join(
            row[0]
            for row in await db.fetch(f"EXPLAIN {export_query(by_subject=by_subject)}", *arguments)
        )
    assert "events_hashed_subject_idx" in plan


async def test_a_row_whose_columns_were_moved_stays_in_its_hashed_subject(
    db: asyncpg.Connection,
) -> None:
    moved = await db.fetchval(
        "SELECT position FROM events WHERE study_id = 'NCT1' AND subject_id = 'S1' "
        "ORDER BY position LIMIT 1"
    )
    async with db.transaction():  # what a superuser could do
        await db.execute("ALTER TABLE events DISABLE TRIGGER USER")
        await db.execute(
            "UPDATE events SET study_id = 'NCT2', subject_id = 'S2' WHERE position = $1", moved
        )
        await db.execute("ALTER TABLE events ENABLE TRIGGER USER")

    out = io.StringIO()
    summary = await write_export(db, out, study="NCT1", subject="S1")
    rows = read_export(io.StringIO(out.getvalue()), "jsonl")

    assert summary.count == len(rows) == 4
    assert summary.altered == [moved]
    assert {(row["study_id"], row["subject_id"]) for row in rows} == {("NCT1", "S1")}
    assert all(row_hash_matches(row) for row in rows)
    other = io.StringIO()
    assert (await write_export(db, other, study="NCT2", subject="S2")).count == 4
