"""The rules consumer's pipeline on a real PostgreSQL: a batch is judged while the one
before it commits, and a batch that fails after the next was judged rewinds both, so
nothing is skipped, duplicated or reordered and every signal is raised once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from aiokafka import TopicPartition

from services.safety_rules.adapters import postgres
from services.safety_rules.adapters.rule_pack_files import load_rule_packs
from services.safety_rules.adapters.subject_state_projection import SubjectStateProjection
from services.safety_rules.entrypoints.consumers import FactsConsumer, PreviousBatchFailed
from shared import eventstore
from shared.db.pool import create_pool
from shared.events import Envelope, EventPayload, LabResultReported, SubjectEnrolled, wrap
from shared.events.topics import LAB_RESULTS, SUBJECTS
from shared.projections import ProjectionRunner
from tests.support.components import create_database, drop_database
from tests.support.services import REPO

pytestmark = pytest.mark.integration

PACKS = load_rule_packs(REPO / "studies")
STUDY = "NCT05262686"
GROUP = "test-pipeline"
START = datetime(2026, 3, 2, 8, tzinfo=UTC)


@pytest.fixture
async def reference(postgres_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A second database, where the same batches are stored one at a time."""
    dsn = await create_database(postgres_dsn)
    pool = await create_pool(dsn)
    try:
        yield pool
    finally:
        await pool.close()
        await drop_database(postgres_dsn, dsn)


class _Outage(ConnectionResetError):
    """The database connection lost while a batch commits."""


@dataclass(frozen=True)
class _Record:
    topic: str
    partition: int
    offset: int
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


class _Consumer:
    """What the consumer does with the Kafka client: seeks and offset commits."""

    def __init__(self) -> None:
        self.seeks: list[tuple[str, int, int]] = []
        self.commits: list[dict[tuple[str, int], int]] = []

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks.append((partition.topic, partition.partition, offset))

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append({(tp.topic, tp.partition): o for tp, o in offsets.items()})


class _Message:
    def __init__(self, records: Sequence[_Record], consumer: _Consumer) -> None:
        self.raw_message = tuple(records)
        self.consumer = consumer


def _envelope(payload: EventPayload) -> Envelope:
    return wrap(payload, source="/tests/pipeline")


def _hb(subject: str, hour: int, value: str) -> Envelope:
    return _envelope(
        LabResultReported(
            study_id=STUDY,
            subject_id=subject,
            loinc_code="718-7",
            value=Decimal(value),
            unit="g/dL",
            reference_low=Decimal(12),
            reference_high=Decimal(16),
            collected_at=START + timedelta(hours=hour),
            source_message_id=f"PIPE-{subject}-{hour}",
        )
    )


def _enrolment(subject: str) -> Envelope:
    return _envelope(
        SubjectEnrolled(
            study_id=STUDY,
            subject_id=subject,
            site_id="PKUPH-01",
            sex="F",
            birth_date=date(1985, 4, 2),
            weight_kg=Decimal(58),
            day0=START.date(),
        )
    )


def _batches(consumer: _Consumer) -> list[_Message]:
    """Three batches on one partition: enrolments, then results whose low values open
    (and normal ones resolve) anaemia episodes, so each batch's signals depend on the
    histories the batch before it leaves."""
    values = ["13.1", "8.2", "13.4", "8.0", "12.9", "8.4"]
    envelopes = [_enrolment("P1"), _enrolment("P2")]
    envelopes += [
        _hb(subject, hour, v) for hour, v in enumerate(values) for subject in ("P1", "P2")
    ]
    records = [
        _Record(
            SUBJECTS if e.type == SubjectEnrolled.event_type else LAB_RESULTS, 0, n, e.to_json()
        )
        for n, e in enumerate(envelopes)
    ]
    # the topics are one partition each here: offsets count per topic
    offsets: dict[str, int] = {}
    numbered = []
    for record in records:
        offset = offsets.get(record.topic, 0)
        offsets[record.topic] = offset + 1
        numbered.append(_Record(record.topic, 0, offset, record.value))
    return [
        _Message(numbered[:6], consumer),
        _Message(numbered[6:10], consumer),
        _Message(numbered[10:], consumer),
    ]


def _consumer(pool: asyncpg.Pool, *, pipelined: bool) -> FactsConsumer:
    return FactsConsumer(
        pool,
        None,  # type: ignore[arg-type]  # nothing here is dead-lettered
        PACKS,
        group_id=GROUP,
        on_commit=lambda published, behind: None,
        projection=ProjectionRunner(pool, SubjectStateProjection()),
        pipelined=pipelined,
    )


async def _log(pool: asyncpg.Pool) -> list[tuple[Any, ...]]:
    """The audit log as (type, stream, stream version, causation), in position order."""
    rows = await pool.fetch(
        "SELECT type, stream_id, stream_version, envelope->>'causationid' AS cause, "
        "payload->>'source_message_id' AS message FROM events ORDER BY position"
    )
    return [tuple(row) for row in rows]


async def _positions(pool: asyncpg.Pool) -> dict[tuple[str, int], int]:
    rows = await pool.fetch(
        "SELECT topic, partition, next_offset FROM consumer_positions WHERE group_id = $1",
        GROUP,
    )
    return {(row["topic"], row["partition"]): row["next_offset"] for row in rows}


async def _run_all(facts: FactsConsumer, batches: list[_Message]) -> None:
    for message in batches:
        await facts(message)  # type: ignore[arg-type]
    await facts.drain()


async def test_pipelined_batches_store_and_judge_as_one_at_a_time(
    pool: asyncpg.Pool, reference: asyncpg.Pool
) -> None:
    kafka = _Consumer()
    await _run_all(_consumer(pool, pipelined=True), _batches(kafka))
    pipelined = await _log(pool)
    positions = await _positions(pool)

    await _run_all(_consumer(reference, pipelined=False), _batches(_Consumer()))

    assert pipelined == await _log(reference)
    assert sum(1 for row in pipelined if row[0] == "org.vigil.safety_signal.raised.v1") == 6
    assert positions == {(SUBJECTS, 0): 2, (LAB_RESULTS, 0): 12}
    # each batch's own offsets went to Kafka after its commit, in order
    assert kafka.commits == [
        {(SUBJECTS, 0): 2, (LAB_RESULTS, 0): 4},
        {(LAB_RESULTS, 0): 8},
        {(LAB_RESULTS, 0): 12},
    ]
    assert kafka.seeks == []


async def test_a_batch_failing_after_the_next_was_judged_rewinds_both(
    pool: asyncpg.Pool, reference: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka = _Consumer()
    first, second, third = _batches(kafka)
    facts = _consumer(pool, pipelined=True)
    await _run_all(facts, [first])
    judged_meanwhile = asyncio.Event()
    real = postgres.PostgresRulesUnitOfWork.record_positions
    calls = 0

    async def lost_once(self: Any, group_id: str, positions: dict[tuple[str, int], int]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:  # the second batch: it fails once the third was judged on it
            await asyncio.wait_for(judged_meanwhile.wait(), 10)
            raise _Outage("connection lost")
        await real(self, group_id, positions)

    real_stored = postgres.PostgresRulesUnitOfWork.stored
    third_ids = {Envelope.from_json(record.value).id for record in third.raw_message}

    async def noting(self: Any, event_ids: Any) -> Any:
        answer = await real_stored(self, event_ids)
        if third_ids & set(event_ids):
            judged_meanwhile.set()  # the third batch is read while the second commits
        return answer

    monkeypatch.setattr(postgres.PostgresRulesUnitOfWork, "record_positions", lost_once)
    monkeypatch.setattr(postgres.PostgresRulesUnitOfWork, "stored", noting)
    await facts(second)  # type: ignore[arg-type]
    with pytest.raises(_Outage, match="connection lost"):
        await facts(third)  # type: ignore[arg-type]
    await facts.drain()
    await asyncio.sleep(0)

    # neither is stored, the positions stay where the first batch left them, the
    # consumer went back to the second batch's first offset, and Kafka heard of neither
    assert await _positions(pool) == {(SUBJECTS, 0): 2, (LAB_RESULTS, 0): 4}
    assert {row[4] for row in await _log(pool) if row[4]} == {
        f"PIPE-{s}-{h}" for h in (0, 1) for s in ("P1", "P2")
    }
    assert kafka.seeks
    assert set(kafka.seeks) == {(LAB_RESULTS, 0, 4)}
    assert len(kafka.commits) == 1

    # consumed again from there: all stored once, in order, as without the failure
    await _run_all(facts, [second, third])
    await _run_all(_consumer(reference, pipelined=False), _batches(_Consumer()))
    assert await _log(pool) == await _log(reference)
    assert await _positions(pool) == {(SUBJECTS, 0): 2, (LAB_RESULTS, 0): 12}


async def test_a_batch_fetched_before_the_rewind_is_dropped(pool: asyncpg.Pool) -> None:
    """Records handed over after a failed batch sent the consumer back, but fetched
    before, start past where it went: they are dropped and the seek made again."""
    kafka = _Consumer()
    first, second, third = _batches(kafka)
    facts = _consumer(pool, pipelined=True)
    await _run_all(facts, [first])
    facts._rewound = {(LAB_RESULTS, 0): 4}  # as a failed second batch leaves it
    await facts(third)  # type: ignore[arg-type]
    await facts.drain()
    assert kafka.seeks == [(LAB_RESULTS, 0, 4)]
    assert await _positions(pool) == {(SUBJECTS, 0): 2, (LAB_RESULTS, 0): 4}
    await _run_all(facts, [second, third])
    assert await _positions(pool) == {(SUBJECTS, 0): 2, (LAB_RESULTS, 0): 12}


def _four_batches(consumer: _Consumer) -> list[_Message]:
    """The three batches with the last cut in two."""
    first, second, third = _batches(consumer)
    cut = [_Message(third.raw_message[:2], consumer), _Message(third.raw_message[2:], consumer)]
    return [first, second, *cut]


async def test_a_failure_after_a_batch_committed_never_reads_that_batch_again(
    pool: asyncpg.Pool, reference: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch stored only at its second try makes the batch judged on it fail, and so the
    one judged on that: each goes back to its own first offsets, never to the batch that
    committed (read again, its poison records were refused and counted twice)."""
    kafka = _Consumer()
    first, second, third_a, third_b = _four_batches(kafka)
    facts = _consumer(pool, pipelined=True)
    await _run_all(facts, [first])
    real = postgres.PostgresRulesUnitOfWork.record_positions
    calls = 0

    async def conflict_once(
        self: Any, group_id: str, positions: dict[tuple[str, int], int]
    ) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:  # the second batch's first try: stored at its second
            raise eventstore.StreamVersionConflict("subject-P1", 1, 2)
        await real(self, group_id, positions)

    monkeypatch.setattr(postgres.PostgresRulesUnitOfWork, "record_positions", conflict_once)
    await facts(second)  # type: ignore[arg-type]
    await facts(third_a)  # type: ignore[arg-type]
    with pytest.raises(PreviousBatchFailed):
        await facts(third_b)  # type: ignore[arg-type]
    await facts.drain()
    await asyncio.sleep(0)

    # the second batch is stored; the consumer goes back to the third's first offset only
    assert await _positions(pool) == {(SUBJECTS, 0): 2, (LAB_RESULTS, 0): 8}
    assert set(kafka.seeks) == {(LAB_RESULTS, 0, 8)}
    await _run_all(facts, [third_a, third_b])
    await _run_all(_consumer(reference, pipelined=False), _four_batches(_Consumer()))
    assert await _log(pool) == await _log(reference)
    assert await _positions(pool) == {(SUBJECTS, 0): 2, (LAB_RESULTS, 0): 12}


class _SlowCommits(_Consumer):
    """Kafka taking its time over an offset commit: each waits until ``answer`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = asyncio.Event()
        self.answer = asyncio.Event()

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.asked.set()
        await self.answer.wait()
        await super().commit(offsets)


async def test_stopping_waits_for_the_last_commit_to_kafka_and_begins_nothing_new(
    pool: asyncpg.Pool,
) -> None:
    """Found in CI: the service stopped its Kafka client while the last batch's offsets
    were being committed (stopping waited only for the database commit), and aiokafka
    logged an error an operator is paged for. Stopping now waits for that commit, and a
    batch handed over meanwhile is not begun (it is read again from the stored
    positions at the next start)."""
    kafka = _SlowCommits()
    first, second, _ = _batches(kafka)
    facts = _consumer(pool, pipelined=True)
    await facts(first)  # type: ignore[arg-type]
    await asyncio.wait_for(kafka.asked.wait(), 10)  # stored; its offsets on their way

    stopping = asyncio.create_task(facts.stop())
    await asyncio.sleep(0.2)
    assert not stopping.done(), "stopped while the last batch's offsets were being committed"
    await facts(second)  # type: ignore[arg-type]  # handed over while stopping
    kafka.answer.set()
    await asyncio.wait_for(stopping, 10)

    assert kafka.commits == [{(SUBJECTS, 0): 2, (LAB_RESULTS, 0): 4}]
    assert await _positions(pool) == {(SUBJECTS, 0): 2, (LAB_RESULTS, 0): 4}


async def test_stopping_ends_a_failed_batch_s_back_off_at_once(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch the database refused waits before it is read again (seconds, growing);
    a service stopping does not wait that out."""
    kafka = _Consumer()
    first, second, _ = _batches(kafka)
    facts = _consumer(pool, pipelined=False)  # each failure reaches the caller
    await _run_all(facts, [first])
    failures = 0

    async def lost(self: Any, group_id: str, positions: dict[tuple[str, int], int]) -> None:
        nonlocal failures
        failures += 1
        raise _Outage("connection lost")

    monkeypatch.setattr(postgres.PostgresRulesUnitOfWork, "record_positions", lost)
    with pytest.raises(_Outage):
        await facts(second)  # type: ignore[arg-type]
    facts._backoff._failures = 5  # as after five more: the next waits 10 s
    backing_off = asyncio.create_task(facts(second))  # type: ignore[arg-type]
    await asyncio.sleep(0.1)
    assert not backing_off.done(), "no back-off after repeated failures"
    began = asyncio.get_running_loop().time()
    await asyncio.wait_for(facts.stop(), 10)
    assert asyncio.get_running_loop().time() - began < 1.0
    assert failures == 2
    with pytest.raises(_Outage):
        await backing_off
