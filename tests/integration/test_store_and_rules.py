"""The rules service's storage on a real PostgreSQL: idempotent appends, one transaction."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from services.safety_rules.adapters.postgres import HistoryCache, PostgresRulesUnitOfWork
from services.safety_rules.adapters.rule_pack_files import load_rule_packs
from services.safety_rules.entrypoints.records import parse_records
from services.safety_rules.handlers.facts import handle_batch
from shared import eventstore
from shared.batch_consumer import Record
from shared.db.migrate import pending_migrations, require_current_schema, upgrade
from shared.events import Envelope, LabResultReported, SubjectEnrolled, wrap
from shared.eventstore import NewEvent
from tests.support.services import REPO

pytestmark = pytest.mark.integration
PACKS = load_rule_packs(REPO / "studies")


def enrolled(subject: str, site: str = "PKUPH-01") -> Envelope:
    payload = SubjectEnrolled(
        study_id="NCT05262686",
        subject_id=subject,
        site_id=site,
        sex="F",
        birth_date=date(1980, 5, 5),
        weight_kg=Decimal("58.5"),
    )
    return wrap(payload, source="/tests")


def hb(subject: str, value: str, unit: str = "g/dL") -> Envelope:
    payload = LabResultReported(
        study_id="NCT05262686",
        subject_id=subject,
        loinc_code="718-7",
        value=Decimal(value),
        unit=unit,
        collected_at=datetime(2026, 6, 1, 9, tzinfo=UTC),
        source_message_id=f"M-{value}-{unit}",
    )
    return wrap(payload, source="/tests")


async def run_batch(connection: asyncpg.Connection, envelopes: list[Envelope]) -> object:
    async with connection.transaction():
        return await handle_batch(envelopes, PostgresRulesUnitOfWork(connection), PACKS)


async def test_upgrade_is_idempotent(fresh_dsn: str) -> None:
    assert await upgrade(fresh_dsn) == []
    await require_current_schema(fresh_dsn)
    connection = await asyncpg.connect(fresh_dsn)
    try:
        assert await pending_migrations(connection) == []
    finally:
        await connection.close()


async def test_schema_behind_the_code_is_named_with_the_fix(postgres_dsn: str) -> None:
    admin = await asyncpg.connect(postgres_dsn)
    name = f"empty_{uuid.uuid4().hex[:8]}"
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        with pytest.raises(RuntimeError, match="vigil db upgrade"):
            await require_current_schema(postgres_dsn.rsplit("/", 1)[0] + f"/{name}")
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


async def test_append_skips_known_event_ids(fresh_dsn: str) -> None:
    connection = await asyncpg.connect(fresh_dsn)
    try:
        first, second = hb("A", "12"), hb("A", "13")
        async with connection.transaction():
            appended = await eventstore.append(connection, [NewEvent(first), NewEvent(first)])
        assert [(a.position, a.new) for a in appended] == [(1, True), (1, False)]
        async with connection.transaction():
            appended = await eventstore.append(connection, [NewEvent(first), NewEvent(second)])
        assert [(a.position, a.new) for a in appended] == [(1, False), (2, True)]
        rows = await connection.fetch("SELECT event_id, stream_id, clinical_time FROM events")
        assert [r["event_id"] for r in rows] == [first.id, second.id]
        assert rows[0]["stream_id"] == "subject-NCT05262686/A"
        assert rows[0]["clinical_time"] == datetime(2026, 6, 1, 9, tzinfo=UTC)
    finally:
        await connection.close()


async def test_redelivered_batch_raises_no_second_signal(fresh_dsn: str) -> None:
    connection = await asyncpg.connect(fresh_dsn)
    try:
        batch = [hb("B", "8.1"), enrolled("B", "PKUPH-02")]  # result before enrolment

        first = await run_batch(connection, batch)
        again = await run_batch(connection, batch)

        assert len(first.signals) == 1  # type: ignore[attr-defined]
        assert again.signals == []
        assert again.duplicates == 2
        signal = first.signals[0].payload()  # type: ignore[attr-defined]
        assert signal.site_id == "PKUPH-02"  # enrolment in the same batch was applied first
        types = [
            r["type"] for r in await connection.fetch("SELECT type FROM events ORDER BY position")
        ]
        assert types == [
            "org.vigil.subject.enrolled.v1",
            "org.vigil.lab_result.reported.v1",
            "org.vigil.safety_signal.raised.v1",
        ]
        outbox = await connection.fetch("SELECT event_id, topic, key FROM outbox")
        assert [(r["event_id"], r["topic"]) for r in outbox] == [
            (first.signals[0].id, "vigil.safety-signals.v1")  # type: ignore[attr-defined]
        ]
        assert bytes(outbox[0]["key"]) == b"NCT05262686/B"
    finally:
        await connection.close()


async def test_failed_batch_leaves_nothing_behind(fresh_dsn: str) -> None:
    connection = await asyncpg.connect(fresh_dsn)
    try:

        async def batch_then_failure() -> None:
            async with connection.transaction():
                uow = PostgresRulesUnitOfWork(connection)
                await handle_batch([enrolled("C"), hb("C", "7")], uow, PACKS)
                await connection.execute("SELECT 1/0")

        with pytest.raises(asyncpg.DivisionByZeroError):
            await batch_then_failure()
        assert await connection.fetchval("SELECT count(*) FROM events") == 0
        assert await connection.fetchval("SELECT count(*) FROM outbox") == 0
        assert await connection.fetchval("SELECT count(*) FROM subject_state") == 0
    finally:
        await connection.close()


async def test_a_subject_written_while_its_batch_was_judged_is_judged_again(
    fresh_dsn: str,
) -> None:
    """Two instances briefly on one subject (its partition moving): the one that judged
    on a history another instance has since extended stores nothing, and judged again on
    the log it says nothing twice."""
    first, second = await asyncpg.connect(fresh_dsn), await asyncpg.connect(fresh_dsn)
    low = hb("E", "7")

    class Overtaken(PostgresRulesUnitOfWork):
        async def append(self, envelopes: Any, **conditions: Any) -> None:
            await run_batch(second, [low])  # the other instance stores the same fact first
            await super().append(envelopes, **conditions)

    try:
        await run_batch(first, [enrolled("E")])
        cache = HistoryCache()
        with pytest.raises(eventstore.StreamVersionConflict, match="at version 3, expected 1"):
            async with first.transaction():
                await handle_batch([low], Overtaken(first, cache), PACKS)
        signals = "SELECT count(*) FROM events WHERE type LIKE 'org.vigil.safety_signal.%'"
        assert await first.fetchval(signals) == 1
        cache.clear()  # what the consumer does on a conflict, before it judges again
        async with first.transaction():
            again = await handle_batch([low], PostgresRulesUnitOfWork(first, cache), PACKS)
        assert (again.stored, again.duplicates, again.signals) == (0, 1, [])
        assert await first.fetchval("SELECT count(*) FROM events") == 3
    finally:
        await first.close()
        await second.close()


def test_records_that_are_not_events_are_rejected_with_the_reason() -> None:
    good = hb("D", "12")
    records = [
        Record("t", 0, 1, b"{not json"),
        Record("t", 0, 2, good.to_json()),
        Record("t", 0, 3, good.to_json().replace(b'"718-7"', b'"hb"')),
    ]
    entries, rejected = parse_records(records)
    assert [entry.envelope for entry in entries] == [good]
    assert [r.record.offset for r in rejected] == [1, 3]
    assert "loinc_code" in rejected[1].reason
    assert '"hb"' not in rejected[1].reason  # the field and the problem, never the value


async def test_a_correction_and_a_cancellation_supersede_the_earlier_report(
    fresh_dsn: str,
) -> None:
    connection = await asyncpg.connect(fresh_dsn)
    try:

        def report(value: str | None, status: str) -> Envelope:
            payload = LabResultReported(
                study_id="NCT05262686",
                subject_id="K",
                loinc_code="718-7",
                value=None if value is None else Decimal(value),
                unit=None if value is None else "g/dL",
                collected_at=datetime(2026, 6, 1, 9, tzinfo=UTC),
                result_status=status,
                source_message_id=f"MSG-{status}",
                observation_key="hl7:FIL1:718-7:",
            )
            return wrap(payload, source="/tests")

        original, corrected, cancelled = report("8.1", "F"), report("12.1", "C"), report(None, "X")
        for batch in ([original], [corrected], [cancelled]):
            await run_batch(connection, batch)

        links = await connection.fetch(
            "SELECT payload->>'reason' AS reason, payload->>'superseded_event_id' AS old, "
            "payload->>'superseding_event_id' AS new FROM events "
            "WHERE type = 'org.vigil.lab_result.superseded.v1' ORDER BY position"
        )
        assert [(r["reason"], r["old"], r["new"]) for r in links] == [
            ("corrected", str(original.id), str(corrected.id)),
            ("retracted", str(corrected.id), str(cancelled.id)),
        ]
        # the original raised a signal; the correction (12.1) retracted it, and the
        # cancellation of the correction raises nothing more
        signal_types = await connection.fetch(
            "SELECT type FROM events WHERE type LIKE '%safety_signal%' ORDER BY position"
        )
        assert [r["type"] for r in signal_types] == [
            "org.vigil.safety_signal.raised.v1",
            "org.vigil.safety_signal.retracted.v1",
        ]
    finally:
        await connection.close()
