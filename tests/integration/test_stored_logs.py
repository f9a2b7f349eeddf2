"""Telling a partition's log kept from one the broker lost or replaced, by the record just
before a stored position (the development broker answers neither OffsetOutOfRange nor a
right ListOffsets "latest" for a last batch of several records)."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from services.safety_rules.adapters.stored_logs import LogVerdict, judge_logs
from services.safety_rules.entrypoints.records import event_id_of
from shared.db.pool import create_pool
from shared.eventstore import NewEvent, append
from shared.settings import CommonSettings
from tests.integration.test_event_store import result

pytestmark = pytest.mark.integration


async def _topic(bootstrap: str, values: list[bytes]) -> TopicPartition:
    """A new topic whose partition 0 holds ``values``, sent in one batch."""
    topic = f"logs-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=50)
    await producer.start()
    try:
        sent = [await producer.send(topic, value, partition=0) for value in values]
        await producer.flush()
        for future in sent:
            await future
    finally:
        await producer.stop()
    return TopicPartition(topic, 0)


async def _judge(
    bootstrap: str, dsn: str, partition: TopicPartition, position: int
) -> LogVerdict | None:
    pool = await create_pool(dsn)
    try:
        settings = CommonSettings(kafka_bootstrap=bootstrap)
        verdicts = await judge_logs(pool, settings, event_id_of, {partition: position})
    finally:
        await pool.close()
    return verdicts.get(partition)


async def test_a_log_whose_record_before_the_position_is_stored_is_kept(
    kafka_bootstrap: str, fresh_dsn: str
) -> None:
    events = [result("LOG-1", f"1{n}.0", n=n) for n in range(4)]
    connection = await asyncpg.connect(fresh_dsn)
    try:
        async with connection.transaction():
            await append(connection, [NewEvent(e) for e in events])
    finally:
        await connection.close()
    partition = await _topic(kafka_bootstrap, [e.to_json() for e in events])

    assert await _judge(kafka_bootstrap, fresh_dsn, partition, 4) is LogVerdict.KEPT


async def test_a_log_shorter_than_the_position_was_lost_though_list_offsets_says_less(
    kafka_bootstrap: str, fresh_dsn: str
) -> None:
    """Five records in one batch: the log ends at 5, one short of the stored 6."""
    events = [result("LOG-2", f"1{n}.0", n=n) for n in range(5)]
    partition = await _topic(kafka_bootstrap, [e.to_json() for e in events])

    assert await _judge(kafka_bootstrap, fresh_dsn, partition, 6) is LogVerdict.LOST
    assert await _judge(kafka_bootstrap, fresh_dsn, partition, 5) is not LogVerdict.LOST


async def test_a_log_whose_record_before_the_position_is_unknown_was_replaced(
    kafka_bootstrap: str, fresh_dsn: str
) -> None:
    """A broker restarted under load: a new log, as long as the old, of events never seen."""
    events = [result("LOG-3", f"1{n}.0", n=n) for n in range(6)]
    partition = await _topic(kafka_bootstrap, [e.to_json() for e in events])

    assert await _judge(kafka_bootstrap, fresh_dsn, partition, 4) is LogVerdict.REPLACED


async def test_a_record_that_is_no_event_leaves_the_position_undecided(
    kafka_bootstrap: str, fresh_dsn: str
) -> None:
    partition = await _topic(kafka_bootstrap, [b"not json", b"still not json"])

    assert await _judge(kafka_bootstrap, fresh_dsn, partition, 2) is None
