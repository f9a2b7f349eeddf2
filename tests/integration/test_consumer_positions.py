"""The rules consumer continues from the positions stored with the data, not Kafka's."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.safety_rules.adapters.positions import SeekToStoredPositions

pytestmark = pytest.mark.integration


@dataclass
class _Subscriber:
    """What the listener needs of FastStream's subscriber: the running consumer."""

    consumer: AIOKafkaConsumer


async def _first_offset(bootstrap: str, dsn: str, topic: str, group: str) -> int:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    listener = SeekToStoredPositions(pool, group)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    listener.subscriber = _Subscriber(consumer)
    consumer.subscribe([topic], listener=listener)
    await consumer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=1000)
            records = [r for rs in batch.values() for r in rs]
            if records:
                return int(min(r.offset for r in records))
    finally:
        await consumer.stop()
        await pool.close()


async def _topic_with(bootstrap: str, count: int) -> str:
    topic = f"positions-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for n in range(count):
            await producer.send_and_wait(topic, f"record {n}".encode(), partition=0)
    finally:
        await producer.stop()
    return topic


async def _store(dsn: str, group: str, topic: str, next_offset: int) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "INSERT INTO consumer_positions (group_id, topic, partition, next_offset) "
            "VALUES ($1, $2, 0, $3)",
            group,
            topic,
            next_offset,
        )
    finally:
        await connection.close()


async def test_a_group_without_kafka_offsets_continues_from_the_stored_position(
    kafka_bootstrap: str, fresh_dsn: str
) -> None:
    topic = await _topic_with(kafka_bootstrap, 10)
    group = f"g-{uuid.uuid4().hex[:8]}"  # Kafka has no committed offset for it
    await _store(fresh_dsn, group, topic, 6)

    assert await _first_offset(kafka_bootstrap, fresh_dsn, topic, group) == 6


async def test_a_stored_position_past_the_log_end_means_the_broker_lost_the_log(
    kafka_bootstrap: str, fresh_dsn: str
) -> None:
    topic = await _topic_with(kafka_bootstrap, 3)
    group = f"g-{uuid.uuid4().hex[:8]}"
    await _store(fresh_dsn, group, topic, 500)  # from before a memory-only broker restarted

    # read from what the broker has; the event store drops what it already holds
    assert await _first_offset(kafka_bootstrap, fresh_dsn, topic, group) == 0


async def _owe_an_event(dsn: str, due_in: timedelta) -> uuid.UUID:
    """An event ingest published and still owes the audit log, next checked in ``due_in``."""
    receipt, event = uuid.uuid4(), uuid.uuid4()
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            """INSERT INTO received_messages
                   (receipt_id, channel, source, raw, raw_sha256, outcome, event_ids)
               VALUES ($1, 'http-json', 'unit', 'x', sha256('x'), 'accepted', ARRAY[$2::uuid])""",
            receipt,
            event,
        )
        await connection.execute(
            """INSERT INTO ingest_outbox (event_id, receipt_id, topic, value, redrives,
                                          next_check_at)
               VALUES ($1, $2, 'vigil.lab-results.v1', 'x', 4,
                       clock_timestamp() + $3::interval)""",
            event,
            receipt,
            due_in,
        )
    finally:
        await connection.close()
    return event


async def _due(dsn: str, event: uuid.UUID) -> bool:
    connection = await asyncpg.connect(dsn)
    try:
        due: bool = await connection.fetchval(
            "SELECT next_check_at <= clock_timestamp() FROM ingest_outbox WHERE event_id = $1",
            event,
        )
    finally:
        await connection.close()
    return due


async def test_a_lost_log_makes_every_event_ingest_owes_due_at_once(
    kafka_bootstrap: str, fresh_dsn: str
) -> None:
    """What the broker held of the events not yet stored is gone: waiting out the
    re-drive's back-off (meant for a slow consumer, up to half an hour) would only make
    their alerts late (the soak found alerts 150 s late after a broker restart)."""
    owed = await _owe_an_event(fresh_dsn, timedelta(minutes=16))
    topic = await _topic_with(kafka_bootstrap, 3)
    group = f"g-{uuid.uuid4().hex[:8]}"
    await _store(fresh_dsn, group, topic, 500)

    await _first_offset(kafka_bootstrap, fresh_dsn, topic, group)

    assert await _due(fresh_dsn, owed)


async def test_a_log_kept_whole_leaves_the_re_drive_back_off_alone(
    kafka_bootstrap: str, fresh_dsn: str
) -> None:
    owed = await _owe_an_event(fresh_dsn, timedelta(minutes=16))
    topic = await _topic_with(kafka_bootstrap, 10)
    group = f"g-{uuid.uuid4().hex[:8]}"
    await _store(fresh_dsn, group, topic, 6)

    await _first_offset(kafka_bootstrap, fresh_dsn, topic, group)

    assert not await _due(fresh_dsn, owed)
