"""Rules instances joining and dying while results stream in: a rebalance under load loses,
duplicates and reorders nothing.

Two instances share twelve partitions per topic; a steady stream of results for many
subjects (lows that raise signals, normals that resolve them, corrections) runs while a
third instance joins, one is killed (SIGKILL, mid-batch) and one is stopped (SIGTERM).
Afterwards the audit log alone must show that each published event is stored once, in its
subject's publish order, that each low raised one signal, that the group's positions are
at each partition's end, and that the hash chain holds.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.settings import VigilSettings
from shared.db.pool import create_pool
from shared.events import CONTENT_TYPE, Envelope, LabResultReported, ResultStatus, wrap
from shared.events.topics import LAB_RESULTS
from shared.eventstore.verify import verify_chain
from shared.kafka import ensure_topics
from tests.support import components
from tests.support.services import service_env, start_service
from tests.support.waiting import eventually
from vigil.devstack.ports import free_port
from vigil.devstack.supervisor import ManagedProcess

pytestmark = pytest.mark.integration

STUDY = "NCT05262686"
GROUP = "vigil-safety-rules"
PARTITIONS = 12
SUBJECTS = [f"RB-{n:02d}" for n in range(36)]
RATE = 90  # results per second, all subjects together
SECONDS = 24  # of streaming
START = datetime(2026, 11, 1, 8, tzinfo=UTC)


def _result(subject: str, n: int, value: str, **changes: object) -> Envelope:
    payload = LabResultReported(
        study_id=STUDY,
        subject_id=subject,
        loinc_code="718-7",
        value=Decimal(value),
        unit="g/dL",
        collected_at=START + timedelta(hours=n),
        source_message_id=f"{subject}-{n}",
        observation_key=f"LAB|{subject}|{n}",
        **changes,
    )
    return wrap(payload, source="/tests/rebalance")


def _results_of(subject: str) -> Iterator[tuple[Envelope, bool]]:
    """A subject's results in publish order, each with whether it should raise a signal:
    normal, low (a new episode: one signal), normal (resolves it), a correction of that
    normal to another normal (supersedes it, changes no episode), and again."""
    n = 0
    while True:
        yield _result(subject, n, "13.0"), False
        yield _result(subject, n + 1, "8.0"), True
        yield _result(subject, n + 2, "12.8"), False
        corrected = _result(subject, n + 2, "13.2", result_status=ResultStatus.CORRECTED)
        yield corrected, False
        n += 3


@dataclass
class Published:
    """What the stream published: each subject's event ids in order, and the lows."""

    by_subject: dict[str, list[uuid.UUID]] = field(default_factory=dict)
    lows: set[uuid.UUID] = field(default_factory=set)

    @property
    def count(self) -> int:
        return sum(len(ids) for ids in self.by_subject.values())

    def all_ids(self) -> list[uuid.UUID]:
        return [i for ids in self.by_subject.values() for i in ids]


async def _stream(bootstrap: str, published: Published) -> None:
    """Publish round-robin over the subjects at RATE per second for SECONDS."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    sources = {subject: _results_of(subject) for subject in SUBJECTS}
    began = time.monotonic()
    try:
        for n in range(RATE * SECONDS):
            subject = SUBJECTS[n % len(SUBJECTS)]
            envelope, raises = next(sources[subject])
            if (pause := began + n / RATE - time.monotonic()) > 0:
                await asyncio.sleep(pause)
            await producer.send(
                LAB_RESULTS,
                envelope.to_json(),
                key=f"{STUDY}/{subject}".encode(),
                headers=[("content-type", CONTENT_TYPE.encode())],
            )
            published.by_subject.setdefault(subject, []).append(envelope.id)
            if raises:
                published.lows.add(envelope.id)
        await producer.flush()
    finally:
        await producer.stop()


async def _ends(bootstrap: str, topic: str) -> dict[int, int]:
    """Each partition's end, the offset after its last record, read from the records
    themselves: the development broker's ListOffsets answers a last batch of several
    records with its base offset plus one (see services/safety_rules/adapters/stored_logs.py),
    which made this test fail whenever a partition's last batch held two results."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = dict.fromkeys(range(PARTITIONS), 0)
        quiet = 0  # polls in a row that brought nothing, with every partition read to its end
        deadline = time.monotonic() + 60
        while quiet < 2 and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            for tp, records in batches.items():
                ends[tp.partition] = max(ends[tp.partition], records[-1].offset + 1)
            read = True
            for tp in partitions:
                mark = consumer.highwater(tp)
                read = read and mark is not None and await consumer.position(tp) >= mark
            quiet = quiet + 1 if read and not batches else 0
    finally:
        await consumer.stop()
    return ends


async def test_instances_joining_and_dying_under_load_lose_duplicate_and_reorder_nothing(
    tmp_path: Path, fresh_dsn: str, smtp_server: tuple[int, object]
) -> None:
    with components.tansu() as broker:
        await ensure_topics(
            VigilSettings(kafka_bootstrap=broker.bootstrap, kafka_partitions=PARTITIONS)
        )
        instances: list[ManagedProcess] = []

        def start(number: int) -> ManagedProcess:
            port = free_port()
            env = service_env(
                database_url=components.as_service_role(fresh_dsn),
                kafka_bootstrap=broker.bootstrap,
                smtp_port=smtp_server[0],
                VIGIL_RULES_PORT=str(port),
                VIGIL_KAFKA_PARTITIONS=str(PARTITIONS),
                VIGIL_RULES_BATCH_MAX_RECORDS="40",
                VIGIL_AUDIT_ANCHOR_FILE=str(tmp_path / "anchors.jsonl"),
            )
            folder = tmp_path / f"rules-{number}"
            instance = start_service("safety_rules", "rules", port, env, folder)
            instances.append(instance)
            return instance

        pool = await create_pool(fresh_dsn)
        try:
            first, second = await asyncio.gather(
                asyncio.to_thread(start, 1), asyncio.to_thread(start, 2)
            )
            published = Published()
            stream = asyncio.create_task(_stream(broker.bootstrap, published))

            await asyncio.sleep(5)
            await asyncio.to_thread(start, 3)  # joins: the group rebalances under load
            await asyncio.sleep(4)
            assert first.process is not None
            first.process.send_signal(signal.SIGKILL)  # dies mid-batch, uncommitted
            await asyncio.sleep(5)
            await asyncio.to_thread(second.stop)  # SIGTERM: leaves the group in good order
            await stream
            assert not stream.exception()
            assert published.lows

            # every published event stored, once
            await eventually(
                lambda: pool.fetchval(
                    "SELECT count(*) = $2 FROM events WHERE event_id = ANY($1::uuid[])",
                    published.all_ids(),
                    published.count,
                ),
                timeout=60,
                what=f"all {published.count} published results stored",
            )
            stored = await pool.fetch(
                "SELECT event_id, subject_id, stream_version FROM events "
                "WHERE event_id = ANY($1::uuid[])",
                published.all_ids(),
            )
            assert len(stored) == published.count == len(set(published.all_ids()))

            # each subject's results in the order they were published
            versions = {row["event_id"]: row["stream_version"] for row in stored}
            for subject, ids in published.by_subject.items():
                in_log = sorted(ids, key=versions.__getitem__)
                assert in_log == ids, f"{subject}'s results were stored out of publish order"

            # each low raised one signal, and nothing else raised any
            await eventually(
                lambda: pool.fetchval(
                    "SELECT count(DISTINCT (envelope->>'causationid')) >= $1 FROM events "
                    "WHERE type = 'org.vigil.safety_signal.raised.v1'",
                    len(published.lows),
                ),
                timeout=30,
                what="a signal for every low",
            )
            causes = await pool.fetch(
                "SELECT (envelope->>'causationid')::uuid AS cause, payload->>'rule_id' AS rule "
                "FROM events WHERE type = 'org.vigil.safety_signal.raised.v1'"
            )
            triggers = [(row["cause"], row["rule"]) for row in causes]
            assert len(triggers) == len(set(triggers)), "a signal raised twice for one trigger"
            assert {cause for cause, _ in triggers} == published.lows
            # the unknown subject is flagged once per subject, whoever judged it
            flagged = await pool.fetch(
                "SELECT subject_id, count(*) AS n FROM events "
                "WHERE type = 'org.vigil.data_quality.issue_raised.v1' GROUP BY subject_id"
            )
            assert {row["subject_id"]: row["n"] for row in flagged} == dict.fromkeys(SUBJECTS, 1)

            # the group's stored positions at the end of every lab-results partition
            ends = await _ends(broker.bootstrap, LAB_RESULTS)
            assert sum(ends.values()) == published.count

            async def positions() -> dict[int, int]:
                rows = await pool.fetch(
                    "SELECT partition, next_offset FROM consumer_positions "
                    "WHERE group_id = $1 AND topic = $2",
                    GROUP,
                    LAB_RESULTS,
                )
                return {row["partition"]: row["next_offset"] for row in rows}

            assert await positions() == {p: end for p, end in ends.items() if end}

            report = await verify_chain(pool)
            assert report.ok, report.problem
            # the killed instance, the stopped one and the one that joined all took part
            logs = [(tmp_path / f"rules-{n}" / "safety_rules.log").read_text() for n in (1, 2, 3)]
            assert all("rules.batch_done" in text for text in logs)
        finally:
            await pool.close()
            for instance in instances:
                instance.stop()
