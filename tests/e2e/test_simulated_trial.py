"""A simulated trial through the real broker and database: exactly the expected signals.

Every case of the clinical case set whose facts arrive one at a time becomes one subject of
the trial. The facts are published round by round (the k-th fact of every subject, then
wait until the round is stored), so each subject's facts reach the rules service in the
order, and the batches, the case table describes; the signal and data-quality events stored
for each subject must then be exactly the case's expectation. The trial runs with one
rules instance that is killed with SIGKILL and restarted halfway, and with two instances in
one consumer group, one of them killed halfway: nothing is lost and nothing duplicated.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.db.pool import create_pool
from shared.events import CONTENT_TYPE, Envelope, payload_class, wrap
from shared.events.topics import SAFETY_SIGNALS, topic_for
from shared.eventstore.verify import verify_chain
from tests.support import components
from tests.support.rules_harness import fact
from tests.support.services import ManagedProcess, service_env, start_service
from tests.support.waiting import eventually
from tests.unit.test_clinical_cases import CASES, _describe
from vigil.devstack.ports import free_port

pytestmark = pytest.mark.integration

# cases whose facts arrive one per batch (cases with facts that must share a batch are
# covered by the unit tests, where batching is exact), and whose times do not depend on when
# Vigil records them (the real stack records on the real clock, the unit harness on its own)
TRIAL = [
    case
    for case in CASES
    if not any(isinstance(f, list) for f in case["facts"]) and not case.get("on_harness_clock")
]


def _rounds() -> tuple[list[list[Envelope]], dict[str, list[str]]]:
    rounds: list[list[Envelope]] = []
    expected: dict[str, list[str]] = {}
    for number, case in enumerate(TRIAL):
        subject = f"TR-{number:03d}"
        expected[subject] = case["expect"]
        facts: list[dict[str, Any]] = list(case["facts"])
        if case.get("enrol", {}) is not False:
            facts.insert(0, {"enrol": case.get("enrol", {})})
        for index, spec in enumerate(facts):
            while len(rounds) <= index:
                rounds.append([])
            rounds[index].append(wrap(fact(spec, subject), source="/tests/trial-site"))
    return rounds, expected


async def _publish(bootstrap: str, envelopes: list[Envelope]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await asyncio.gather(
            *(
                producer.send_and_wait(
                    topic_for(type(e.payload())),
                    e.to_json(),
                    key=(e.subject or "").encode(),
                    headers=[("content-type", CONTENT_TYPE.encode())],
                )
                for e in envelopes
            )
        )
    finally:
        await producer.stop()


async def _stored(pool: asyncpg.Pool, envelopes: list[Envelope]) -> bool:
    count = await pool.fetchval(
        "SELECT count(*) FROM events WHERE event_id = ANY($1::uuid[])", [e.id for e in envelopes]
    )
    return bool(count == len(envelopes))


async def _described(pool: asyncpg.Pool) -> dict[str, list[str]]:
    rows = await pool.fetch(
        "SELECT subject_id, type, payload_json FROM events "
        "WHERE type LIKE 'org.vigil.safety_signal.%' OR type LIKE 'org.vigil.data_quality.%' "
        "ORDER BY position"
    )
    found: dict[str, list[str]] = {}
    for row in rows:
        payload = payload_class(row["type"]).model_validate_json(row["payload_json"])
        found.setdefault(row["subject_id"], []).append(_describe(payload))
    return found


async def _topic_ids(bootstrap: str, expected: int) -> list[uuid.UUID]:
    consumer = AIOKafkaConsumer(
        SAFETY_SIGNALS,
        bootstrap_servers=bootstrap,
        group_id=f"trial-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    ids: list[uuid.UUID] = []
    try:
        async with asyncio.timeout(60):
            while len(set(ids)) < expected:
                batch = await consumer.getmany(timeout_ms=1000)
                ids += [Envelope.from_json(r.value).id for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()
    return ids


def _start_rules(number: int, env: dict[str, str], tmp_path: Path, attempt: int) -> ManagedProcess:
    port = free_port()
    return start_service(
        "safety_rules",
        "rules",
        port,
        {**env, "VIGIL_RULES_PORT": str(port)},
        tmp_path / f"rules-{number}-{attempt}",
    )


@pytest.mark.parametrize("instances", [1, 2], ids=["one-instance", "two-instances"])
async def test_the_trial_yields_exactly_the_expected_signals(
    instances: int, tmp_path: Path, fresh_dsn: str, smtp_server: tuple[int, object]
) -> None:
    rounds, expected = _rounds()
    assert len(TRIAL) >= 60
    with components.tansu() as broker:
        env = service_env(
            database_url=components.as_service_role(fresh_dsn),
            kafka_bootstrap=broker.bootstrap,
            smtp_port=smtp_server[0],
            VIGIL_RULES_BATCH_MAX_RECORDS="40",
            VIGIL_AUDIT_ANCHOR_FILE=str(tmp_path / "anchors.jsonl"),
        )
        running = [_start_rules(n, env, tmp_path, 0) for n in range(instances)]
        pool = await create_pool(fresh_dsn)
        try:
            for number, batch in enumerate(rounds):
                await _publish(broker.bootstrap, batch)
                if number == 1:
                    # halfway, while the round is being consumed: no goodbye, no commit
                    victim = running[-1]
                    victim.process.send_signal(signal.SIGKILL)
                    victim.process.wait(timeout=10)
                    running[-1] = _start_rules(instances - 1, env, tmp_path, 1)
                await eventually(
                    lambda batch=batch: _stored(pool, batch),  # type: ignore[misc]
                    timeout=90,
                    what=f"round {number} stored",
                )
            # the last round's signals are appended in the same transaction as its facts
            found = await _described(pool)
            assert {s: found.get(s, []) for s in expected} == expected
            signal_events = sum(
                1 for descriptions in found.values() for d in descriptions if not d.startswith("dq")
            )
            # every signal and flag goes out once through the outbox, and reaches the topic
            await eventually(
                lambda: pool.fetchval(
                    "SELECT count(*) = $1 FROM outbox WHERE published_at IS NOT NULL",
                    sum(len(v) for v in found.values()),
                ),
                timeout=60,
                what="outbox drained",
            )
            on_topic = await _topic_ids(broker.bootstrap, signal_events)
            stored_ids = {
                r["event_id"]
                for r in await pool.fetch(
                    "SELECT event_id FROM events WHERE type LIKE 'org.vigil.safety_signal.%'"
                )
            }
            assert set(on_topic) == stored_ids
            report = await verify_chain(pool, range_size=500)
            assert report.ok, report.problem
            if instances == 2:
                logs = await asyncio.to_thread(
                    lambda: [p.read_text() for p in tmp_path.glob("rules-*/safety_rules.log")]
                )
                assert sum("rules.batch_done" in log for log in logs) >= 2
        finally:
            await pool.close()
            for process in running:
                process.stop()
