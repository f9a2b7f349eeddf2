"""The audit log on a real PostgreSQL: idempotence, concurrency, immutability, tampering."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from shared import eventstore
from shared.db.pool import create_pool
from shared.events import Envelope, LabResultReported, wrap
from shared.eventstore import EventIdConflict, NewEvent, StreamVersionConflict
from shared.eventstore.anchors import read_anchors, record_anchor
from shared.eventstore.audit import audit_verify
from shared.eventstore.export import read_export, row_hash_matches, write_export
from shared.eventstore.verify import verify_chain
from tests.support.components import as_service_role
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


def result(subject: str, value: str, *, study: str = "NCT05262686", n: int = 0) -> Envelope:
    payload = LabResultReported(
        study_id=study,
        subject_id=subject,
        loinc_code="718-7",
        value=Decimal(value),
        unit="g/dL",
        collected_at=datetime(2026, 6, 1, 9, n % 60, tzinfo=UTC),
        source_message_id=f"M-{subject}-{value}-{n}",
    )
    return wrap(payload, source="/tests")


async def append(connection: asyncpg.Connection, *envelopes: Envelope) -> list[int]:
    async with connection.transaction():
        appended = await eventstore.append(connection, [NewEvent(e) for e in envelopes])
    return [a.position for a in appended]


@pytest.fixture
async def db(fresh_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(fresh_dsn)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def pool(fresh_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(fresh_dsn, max_size=3)
    try:
        yield pool
    finally:
        await pool.close()


async def blocked_by(
    observer: asyncpg.Connection, waiter: asyncpg.Connection, holder: asyncpg.Connection
) -> None:
    """Return once PostgreSQL reports ``waiter``'s backend waiting on a lock ``holder`` holds;
    fail loudly if it never does. ``observer`` is a third connection, outside any transaction
    (the other two are busy)."""
    await eventually(
        lambda: observer.fetchval(
            "SELECT $1::int = ANY(pg_blocking_pids($2))",
            holder.get_server_pid(),
            waiter.get_server_pid(),
        ),
        timeout=10,
        what="one writer waiting on the append lock the other holds",
    )


async def tamper(connection: asyncpg.Connection, *statements: str) -> None:
    """What a superuser could do: switch the guard triggers off, change rows, switch back."""
    async with connection.transaction():
        await connection.execute("ALTER TABLE events DISABLE TRIGGER USER")
        for statement in statements:
            await connection.execute(statement)
        await connection.execute("ALTER TABLE events ENABLE TRIGGER USER")


async def test_same_id_same_content_is_a_noop_reporting_the_original_position(
    db: asyncpg.Connection,
) -> None:
    first = result("S1", "12.0")
    assert await append(db, first, result("S1", "13.0")) == [1, 2]
    # a resend: same payload, but the envelope was made later by ingest
    resent = first.model_copy(update={"time": datetime.now(UTC), "correlation_id": uuid.uuid4()})

    assert await append(db, resent) == [1]
    assert await db.fetchval("SELECT count(*) FROM events") == 2


async def test_same_id_different_content_is_an_error_and_stores_nothing(
    db: asyncpg.Connection,
) -> None:
    first = result("S1", "12.0")
    await append(db, first)
    forged = first.model_copy(update={"data": {**first.data, "value": 6.1}})

    with pytest.raises(EventIdConflict, match="position 1"):
        await append(db, result("S1", "11.0"), forged)
    assert await db.fetchval("SELECT count(*) FROM events") == 1


async def test_stream_versions_and_expected_version(db: asyncpg.Connection) -> None:
    async with db.transaction():
        appended = await eventstore.append(
            db,
            [
                NewEvent(result("S1", "12.0"), expected_version=0),
                NewEvent(result("S2", "12.0"), expected_version=0),
                NewEvent(result("S1", "11.0"), expected_version=1),
            ],
        )
    assert [(a.stream_id, a.stream_version) for a in appended] == [
        ("subject-NCT05262686/S1", 1),
        ("subject-NCT05262686/S2", 1),
        ("subject-NCT05262686/S1", 2),
    ]
    with pytest.raises(StreamVersionConflict, match="at version 2, expected 1"):
        async with db.transaction():
            await eventstore.append(db, [NewEvent(result("S1", "10.0"), expected_version=1)])
    stream = await eventstore.read_stream(db, "subject-NCT05262686/S1")
    assert [e.payload["value"] for e in stream] == [12.0, 11.0]
    assert stream[0].to_envelope().payload() == result("S1", "12.0").payload()


async def test_a_batch_can_name_the_versions_its_streams_must_be_at_and_its_time(
    pool: asyncpg.Pool,
) -> None:
    """A writer that judged before appending names the stream versions it judged on and
    the time it took the facts up at; the batch is stored at that time, or not at all."""
    taken_up = datetime(2026, 6, 1, 9, 30, 0, 123456, tzinfo=UTC)
    async with pool.acquire() as db:
        async with db.transaction():
            await eventstore.append(
                db,
                [NewEvent(result("S1", "12.0")), NewEvent(result("S2", "11.0"))],
                expected_versions={"subject-NCT05262686/S1": 0, "subject-NCT05262686/S9": 0},
                recorded_at=taken_up,
            )
        rows = await db.fetch("SELECT recorded_at FROM events ORDER BY position")
        assert [r["recorded_at"] for r in rows] == [taken_up, taken_up]
        with pytest.raises(StreamVersionConflict, match="at version 1, expected 0"):
            async with db.transaction():
                await eventstore.append(
                    db,
                    [NewEvent(result("S3", "10.0"))],
                    expected_versions={"subject-NCT05262686/S1": 0},
                )
        assert await db.fetchval("SELECT count(*) FROM events") == 2
    report = await verify_chain(pool)  # the hash covers the time that was stored
    assert report.ok, report.problem


async def test_two_writers_on_one_stream_one_wins(fresh_dsn: str) -> None:
    first, second, observer = [await asyncpg.connect(fresh_dsn) for _ in range(3)]
    try:
        await append(first, result("S1", "12.0"))
        winner_holds_lock = asyncio.Event()

        async def winner() -> None:
            async with first.transaction():
                await eventstore.append(first, [NewEvent(result("S1", "9.0"), expected_version=1)])
                winner_holds_lock.set()
                # commit only once the loser is queued behind this transaction: it must
                # judge its expected version after the winner's append, not before
                await blocked_by(observer, second, first)

        async def loser() -> None:
            await winner_holds_lock.wait()
            async with second.transaction():
                await eventstore.append(second, [NewEvent(result("S1", "8.0"), expected_version=1)])

        outcomes = await asyncio.gather(winner(), loser(), return_exceptions=True)

        assert outcomes[0] is None
        assert isinstance(outcomes[1], StreamVersionConflict)
        assert await first.fetchval("SELECT count(*) FROM events") == 2
    finally:
        for connection in (first, second, observer):
            await connection.close()


async def test_concurrent_writers_on_different_streams_leave_a_valid_chain(
    fresh_dsn: str,
) -> None:
    async def writer(number: int) -> None:
        connection = await asyncpg.connect(fresh_dsn)
        try:
            for batch in range(15):
                await append(
                    connection,
                    *(result(f"W{number}-{i}", "12.5", n=batch) for i in range(20)),
                )
        finally:
            await connection.close()

    await asyncio.gather(*(writer(n) for n in range(4)))

    pool = await create_pool(fresh_dsn)
    try:
        report = await verify_chain(pool, range_size=100)
        assert report.ok, report.problem
        assert report.checked == 4 * 15 * 20
        positions = [r["position"] for r in await pool.fetch("SELECT position FROM events")]
        assert sorted(positions) == list(range(1, 1201))
    finally:
        await pool.close()


async def test_catch_up_reader_never_skips_a_position_a_slow_writer_fills_later(
    fresh_dsn: str,
) -> None:
    slow, fast, reader, observer = [await asyncpg.connect(fresh_dsn) for _ in range(4)]
    try:
        slow_has_appended = asyncio.Event()
        fast_is_waiting = asyncio.Event()
        reader_looked_meanwhile = asyncio.Event()
        seen: list[int] = []

        async def slow_writer() -> None:
            async with slow.transaction():
                await eventstore.append(
                    slow, [NewEvent(result("SLOW", "12", n=i)) for i in range(5)]
                )
                slow_has_appended.set()
                # commits late: only once the fast writer is queued behind it and the
                # reader has read the log in full while both were in flight
                await blocked_by(observer, fast, slow)
                fast_is_waiting.set()
                await eventually(
                    lambda: asyncio.sleep(0, reader_looked_meanwhile.is_set()),
                    timeout=10,
                    what="a read of the log while both writers were in flight",
                )

        async def fast_writer() -> None:
            await slow_has_appended.wait()
            await append(fast, *(result("FAST", "12", n=i) for i in range(5)))

        async def catch_up_reader() -> None:
            position = 0
            while position < 10:
                both_in_flight = fast_is_waiting.is_set()
                for event in await eventstore.read_all(reader, after_position=position):
                    seen.append(event.position)
                    position = event.position
                if both_in_flight:
                    reader_looked_meanwhile.set()
                await asyncio.sleep(0.01)

        await asyncio.wait_for(
            asyncio.gather(slow_writer(), fast_writer(), catch_up_reader()), timeout=20
        )
        assert seen == list(range(1, 11))
        streams = await reader.fetch("SELECT stream_id FROM events ORDER BY position")
        assert [r["stream_id"][-4:] for r in streams] == ["SLOW"] * 5 + ["FAST"] * 5
    finally:
        for connection in (slow, fast, reader, observer):
            await connection.close()


async def test_service_role_may_not_update_delete_or_truncate(fresh_dsn: str) -> None:
    admin = await asyncpg.connect(fresh_dsn)
    await append(admin, result("S1", "12.0"))
    await admin.close()
    service = await asyncpg.connect(as_service_role(fresh_dsn))
    try:
        for statement in (
            "UPDATE events SET source = 'x'",
            "DELETE FROM events",
            "TRUNCATE events",
        ):
            with pytest.raises(
                asyncpg.InsufficientPrivilegeError, match="permission denied for table events"
            ):
                await service.execute(statement)
        # it may append and read
        assert await append(service, result("S1", "11.0")) == [2]
        assert await service.fetchval("SELECT count(*) FROM events") == 2
    finally:
        await service.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET source = 'x'",
        "DELETE FROM events WHERE position = 1",
        "TRUNCATE events CASCADE",
    ],
)
async def test_even_the_owner_is_refused_by_the_triggers(
    db: asyncpg.Connection, statement: str
) -> None:
    await append(db, result("S1", "12.0"))
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await db.execute(statement)


async def test_insert_outside_the_event_store_is_refused(db: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append lock"):
        await db.execute(
            "INSERT INTO events (position, event_id, stream_id, stream_version, type, "
            "schema_version, recorded_at, source, envelope_json, payload_json, prev_hash, hash) "
            "VALUES "
            "(1, gen_random_uuid(), 's', 1, 't.v1', 1, now(), 'x', '{}', '{}', '', '')"
        )


async def seeded(db: asyncpg.Connection, count: int = 10) -> None:
    await append(db, *(result(f"S{i % 3}", f"1{i % 10}.5", n=i) for i in range(count)))


async def test_verify_passes_an_untouched_log(db: asyncpg.Connection, pool: asyncpg.Pool) -> None:
    await seeded(db)
    report = await verify_chain(pool)
    assert report.ok
    assert (report.checked, report.last_position) == (10, 10)


async def test_superuser_edit_is_found_at_its_position(
    db: asyncpg.Connection, pool: asyncpg.Pool
) -> None:
    await seeded(db)
    await tamper(
        db,
        "UPDATE events SET payload_json = replace(payload_json, '\"value\":13.5', "
        "'\"value\":6.1') WHERE position = 4",
    )
    assert await db.fetchval("SELECT payload->>'value' FROM events WHERE position = 4") == "6.1"
    report = await verify_chain(pool)
    assert not report.ok
    assert report.broken_at == 4
    assert "altered" in (report.problem or "")


async def test_deleted_row_is_found(db: asyncpg.Connection, pool: asyncpg.Pool) -> None:
    await seeded(db)
    await tamper(db, "DELETE FROM events WHERE position = 6")
    report = await verify_chain(pool)
    assert report.broken_at == 6
    assert "missing" in (report.problem or "")


async def test_swapped_pair_is_found(db: asyncpg.Connection, pool: asyncpg.Pool) -> None:
    await seeded(db)
    await tamper(
        db,
        "UPDATE events SET position = 1000 WHERE position = 3",
        "UPDATE events SET position = 3 WHERE position = 7",
        "UPDATE events SET position = 7 WHERE position = 1000",
    )
    report = await verify_chain(pool)
    assert report.broken_at == 3


async def test_removing_the_newest_rows_is_found_through_the_anchor(
    db: asyncpg.Connection, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    anchors = tmp_path / "anchors.jsonl"
    await seeded(db)
    first = await audit_verify(pool, anchors)
    assert first.ok
    assert first.new_anchor is not None
    assert first.new_anchor.position == 10

    await tamper(db, "DELETE FROM events WHERE position > 8")

    assert (await verify_chain(pool)).ok  # the shorter chain is still a chain...
    second = await audit_verify(pool, anchors)
    assert not second.ok  # ...but the anchor outside the database remembers position 10
    assert any("position 10" in problem for problem in second.anchor_problems)
    assert "FAILED" in second.lines()


async def test_verify_re_hashes_every_row_unless_asked_to_resume_from_an_anchor(
    db: asyncpg.Connection, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    anchors = tmp_path / "anchors.jsonl"
    await seeded(db)
    assert (await audit_verify(pool, anchors)).ok
    await append(db, result("S9", "12.0"), result("S9", "13.0"))

    resumed = await audit_verify(pool, anchors, from_anchor=True)
    assert resumed.ok
    assert resumed.resumed_from is not None
    assert resumed.chain.checked == 2
    assert resumed.not_rehashed == 10
    assert any("positions 1..10 were NOT re-hashed" in line for line in resumed.lines())
    full = await audit_verify(pool, anchors)
    assert full.resumed_from is None
    assert full.chain.checked == 12
    store = await eventstore.store_id(db)
    assert [a.position for a in read_anchors(anchors, store)] == [10, 12, 12]
    kinds = await db.fetch("SELECT kind, position FROM audit_checkpoints ORDER BY id")
    assert [(r["kind"], r["position"]) for r in kinds] == [("verified", p) for p in (10, 12, 12)]


async def test_anchor_records_the_head(db: asyncpg.Connection, tmp_path: Path) -> None:
    await seeded(db, 3)
    anchor = await record_anchor(db, tmp_path / "a.jsonl", "anchored")
    assert anchor.position == 3
    assert bytes.fromhex(anchor.hash) == (await eventstore.head(db))[1]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_export_round_trips_and_each_row_checks_out(db: asyncpg.Connection, fmt: str) -> None:
    await append(db, *(result(f"S{i % 2}", "12.25", n=i) for i in range(6)))
    await append(db, result("S0", "8.5", study="OTHER-STUDY"))
    out = io.StringIO()

    summary = await write_export(db, out, study="NCT05262686", fmt=fmt)  # type: ignore[arg-type]

    rows = read_export(io.StringIO(out.getvalue()), fmt)  # type: ignore[arg-type]
    assert summary.count == len(rows) == 6
    assert summary.altered == []
    assert all(row_hash_matches(row) for row in rows)
    stored = await eventstore.read_all(db)
    by_position = {e.position: e for e in stored}
    for row in rows:
        event = by_position[int(row["position"])]
        assert row["event_id"] == str(event.event_id)
        assert json.loads(row["payload"]) == event.payload
        assert row["hash"] == event.hash.hex()
    subject_only = io.StringIO()
    assert (await write_export(db, subject_only, study="NCT05262686", subject="S1")).count == 3


def test_an_altered_exported_row_no_longer_checks_out() -> None:
    record = {
        "position": 1,
        "event_id": str(uuid.UUID(int=1)),
        "stream_id": "s",
        "stream_version": 1,
        "type": "t.v1",
        "schema_version": 1,
        "clinical_time": None,
        "recorded_at": "2026-01-01T00:00:00.000000+00:00",
        "source": "x",
        "envelope": "{}",
        "payload": '{"value": 8.5}',
        "prev_hash": "00" * 32,
    }
    from shared.eventstore.canonical import canonical_bytes, chain_hash

    canonical = canonical_bytes(
        position=1,
        event_id=record["event_id"],  # type: ignore[arg-type]
        stream_id="s",
        stream_version=1,
        type="t.v1",
        schema_version=1,
        clinical_time_us=None,
        recorded_at_us=1767225600000000,
        source="x",
        envelope_text="{}",
        payload_text='{"value": 8.5}',
    )
    record["hash"] = chain_hash(bytes(32), canonical).hex()
    assert row_hash_matches(record)
    assert not row_hash_matches({**record, "payload": '{"value": 9.5}'})


async def test_appends_through_a_pool_and_by_several_connections_keep_versions_right(
    fresh_dsn: str,
) -> None:
    """The per-connection memory of stream versions must not outlive another writer."""
    pool = await create_pool(fresh_dsn, max_size=2)
    try:
        for n in range(6):
            async with pool.acquire() as connection, connection.transaction():
                await eventstore.append(connection, [NewEvent(result("P1", "12", n=n))])
        other = await asyncpg.connect(fresh_dsn)
        try:
            await append(other, result("P1", "11", n=99))  # another writer moves the head
        finally:
            await other.close()
        async with pool.acquire() as connection, connection.transaction():
            (appended,) = await eventstore.append(connection, [NewEvent(result("P1", "10", n=7))])
        assert appended.stream_version == 8
        assert (await verify_chain(pool)).ok
    finally:
        await pool.close()


async def test_verify_accepts_every_subject_attribute_the_appender_derives_from(
    pool: asyncpg.Pool, db: asyncpg.Connection
) -> None:
    base = result("S1", "12.0")
    odd = [base.model_copy(update={"id": uuid.uuid4(), "subject": s}) for s in ("x", "a/b/c")]
    await append(db, base, *odd)

    assert (await verify_chain(pool)).ok


async def test_verify_finds_a_jsonb_column_no_longer_generated_from_the_hashed_text(
    pool: asyncpg.Pool, db: asyncpg.Connection
) -> None:
    await append(db, result("S1", "12.0"), result("S1", "13.0"))
    await tamper(
        db,
        "ALTER TABLE events ALTER COLUMN payload DROP EXPRESSION",
        "UPDATE events SET payload = '{}' WHERE position = 1",
    )

    report = await verify_chain(pool)

    assert not report.ok
    assert report.problem is not None
    assert "column payload" in report.problem


async def test_verify_finds_a_row_moved_to_another_study(
    pool: asyncpg.Pool, db: asyncpg.Connection
) -> None:
    await append(db, result("S1", "12.0"), result("S1", "13.0"))
    await tamper(db, "UPDATE events SET study_id = 'OTHER' WHERE position = 2")

    report = await verify_chain(pool)

    assert report.broken_at == 2
    assert report.problem is not None
    assert "study_id or subject_id" in report.problem
