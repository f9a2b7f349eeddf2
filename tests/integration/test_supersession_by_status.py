"""Result status decides which report stands, on the real store: with the history cached
in the process, or read back from the log as after a restart; the subject-state projection
agrees."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest

from services.safety_rules.adapters.postgres import HistoryCache, PostgresRulesUnitOfWork
from services.safety_rules.adapters.rule_pack_files import load_rule_packs
from services.safety_rules.adapters.subject_state_projection import SubjectStateProjection
from services.safety_rules.handlers.facts import BatchOutcome, handle_batch
from shared.db.pool import create_pool
from shared.events import Envelope, LabResultReported, wrap
from shared.projections import ProjectionRunner
from tests.support.components import as_service_role
from tests.support.services import REPO

pytestmark = pytest.mark.integration
PACKS = load_rule_packs(REPO / "studies")
STUDY = "NCT05262686"


def hb(subject: str, value: str | None, status: str, message: str) -> Envelope:
    return wrap(
        LabResultReported(
            study_id=STUDY,
            subject_id=subject,
            loinc_code="718-7",
            value=None if value is None else Decimal(value),
            unit=None if value is None else "g/dL",
            collected_at=datetime(2026, 6, 1, 9, tzinfo=UTC),
            result_status=status,
            source_message_id=message,
            observation_key="hl7:FIL-9:718-7:",
        ),
        source="/tests",
    )


async def run(
    pool: asyncpg.Pool, batches: list[list[Envelope]], cache: HistoryCache | None
) -> list[BatchOutcome]:
    outcomes = []
    for batch in batches:
        async with pool.acquire() as connection, connection.transaction():
            # no cache: every batch reads the subject back from the log, as after a restart
            uow = PostgresRulesUnitOfWork(connection, cache if cache else HistoryCache())
            outcomes.append(await handle_batch(batch, uow, PACKS))
    return outcomes


async def links(pool: asyncpg.Pool, subject: str) -> list[tuple[str, str, str]]:
    rows = await pool.fetch(
        """SELECT l.payload->>'reason' AS reason, old.payload->>'source_message_id' AS old,
                  new.payload->>'source_message_id' AS new
             FROM events l
             JOIN events old ON old.event_id = (l.payload->>'superseded_event_id')::uuid
             JOIN events new ON new.event_id = (l.payload->>'superseding_event_id')::uuid
            WHERE l.type = 'org.vigil.lab_result.superseded.v1' AND l.subject_id = $1
            ORDER BY l.position""",
        subject,
    )
    return [(r["old"], r["new"], r["reason"]) for r in rows]


async def signals(pool: asyncpg.Pool, subject: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT type FROM events WHERE type LIKE 'org.vigil.safety_signal.%' "
        "AND subject_id = $1 ORDER BY position",
        subject,
    )
    return [r["type"].split(".")[-2] for r in rows]


@pytest.mark.parametrize("cached", [True, False], ids=["cached", "read-back"])
async def test_status_decides_on_the_real_store(fresh_dsn: str, cached: bool) -> None:
    pool = await create_pool(as_service_role(fresh_dsn))
    runner = ProjectionRunner(pool, SubjectStateProjection())
    cache = HistoryCache() if cached else None
    try:
        late_p = [hb("LP", "12.5", "F", "lp-final")], [hb("LP", "7.0", "P", "lp-prelim")]
        late_f = [hb("LF", "12.1", "C", "lf-correction")], [hb("LF", "7.0", "F", "lf-original")]
        c_after_f = [hb("CF", "7.0", "F", "cf-final")], [hb("CF", "12.1", "C", "cf-correction")]
        x_after_f = [hb("XF", "7.0", "F", "xf-final")], [hb("XF", None, "X", "xf-cancel")]
        outcomes = await run(pool, [*late_p, *late_f, *c_after_f, *x_after_f], cache)
        await runner.catch_up()

        assert [len(o.signals) for o in outcomes] == [0, 0, 0, 0, 1, 1, 1, 1]
        assert await links(pool, "LP") == [("lp-prelim", "lp-final", "late")]
        assert await signals(pool, "LP") == []
        assert await links(pool, "LF") == [("lf-original", "lf-correction", "late")]
        assert await signals(pool, "LF") == []
        assert await links(pool, "CF") == [("cf-final", "cf-correction", "corrected")]
        assert await signals(pool, "CF") == ["raised", "retracted"]
        assert await links(pool, "XF") == [("xf-final", "xf-cancel", "retracted")]
        assert await signals(pool, "XF") == ["raised", "retracted"]
        latest = await pool.fetch(
            "SELECT subject_id, state->'latest'->'718-7'->>'value' AS value FROM subject_state "
            "ORDER BY subject_id"
        )
        # the projection keeps the report that stands: the late one never becomes latest
        assert {r["subject_id"]: r["value"] for r in latest} == {
            "CF": "12.1",
            "LF": "12.1",
            "LP": "12.5",
            "XF": None,
        }

        redelivered = await run(pool, [late_p[1], late_f[1]], cache)

        assert [(o.stored, o.signals, o.data_quality) for o in redelivered] == [(0, [], [])] * 2
        assert await links(pool, "LP") == [("lp-prelim", "lp-final", "late")]
    finally:
        await pool.close()
