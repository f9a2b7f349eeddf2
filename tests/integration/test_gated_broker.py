"""The development broker restarted under a producer that still holds records for it.

Tansu 0.6.0 keeps records produced to a topic it does not have, and numbers the partition
from 0 again once the topic is created: acknowledged records then vanish and offsets repeat
(the short soak saw the rules service read records that later readers of the same offsets
never saw). The soak's broker sits behind a gate that opens only once the topics exist
(:class:`vigil.devstack.tansu.GatedTansuBroker`); the plain broker is kept here, expected
to fail, so that a Tansu that no longer does this is noticed and the gate can go.
"""

from __future__ import annotations

import asyncio
import shutil

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.support.components import scratch_dir
from vigil.devstack.ports import free_port
from vigil.devstack.tansu import GatedTansuBroker, TansuBroker, create_topics

pytestmark = pytest.mark.integration

TOPIC = "vigil.lab-results.v1"


async def _send(producer: AIOKafkaProducer, value: str) -> tuple[int, str] | None:
    """The offset the broker acknowledged ``value`` at, or None when it refused it."""
    try:
        sent = await asyncio.wait_for(
            producer.send_and_wait(TOPIC, value.encode(), partition=1), 20
        )
    except Exception:  # a refusal is allowed; a lost acknowledged record is not
        return None
    return sent.offset, value


async def _log(bootstrap: str) -> list[tuple[int, str]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(TOPIC, 1)
        consumer.assign([partition])
        consumer.seek(partition, 0)
        read: list[tuple[int, str]] = []
        for _ in range(4):
            batches = await consumer.getmany(timeout_ms=500)
            read += [(r.offset, (r.value or b"").decode()) for rs in batches.values() for r in rs]
        return read
    finally:
        await consumer.stop()


async def _restart_under_a_producer(
    broker: TansuBroker,
) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    producer = AIOKafkaProducer(
        bootstrap_servers=broker.bootstrap, enable_idempotence=False, linger_ms=2
    )
    await producer.start()
    try:
        for number in range(3):
            await _send(producer, f"before-{number}")
        await asyncio.to_thread(broker.stop)
        # records handed to the producer while the broker is away, sent when it is back
        waiting = [asyncio.create_task(_send(producer, f"during-{n}")) for n in range(6)]
        await asyncio.sleep(0.5)
        await asyncio.to_thread(broker.start)
        acknowledged = [await task for task in waiting]
        await _log(broker.bootstrap)  # a reader names the topic (Tansu then creates it)
        acknowledged += [await _send(producer, f"after-{n}") for n in range(10)]
    finally:
        await producer.stop()
    return [a for a in acknowledged if a is not None], await _log(broker.bootstrap)


@pytest.mark.parametrize(
    "gated",
    [
        True,
        pytest.param(
            False,
            # the defect of the third-party broker the gate exists for, not Vigil's: this
            # case shows it is still there. strict: once a Tansu release no longer loses
            # these records the case passes, the suite fails on XPASS, and the gate (and
            # this case) can go
            marks=pytest.mark.xfail(
                strict=True,
                reason="Tansu 0.6.0 (development broker, not used in production) keeps "
                "records produced to a missing topic and renumbers the partition from 0 "
                "when the topic is created, losing acknowledged records; "
                "GatedTansuBroker exists to avoid it",
            ),
        ),
    ],
    ids=["gated", "plain-tansu"],
)
async def test_every_record_acknowledged_after_a_restart_is_read_back_where_it_was_put(
    gated: bool,
) -> None:
    folder = scratch_dir("vigil-test-gated-broker-")
    port = free_port()
    broker = (
        GatedTansuBroker(port, log_file=folder / "log", topics=(TOPIC,), partitions=3)
        if gated
        else TansuBroker(port, log_file=folder / "log")
    )
    await asyncio.to_thread(broker.start)
    try:
        if not gated:
            await create_topics(port, (TOPIC,), 3, timeout=10)
        acknowledged, log = await _restart_under_a_producer(broker)
    finally:
        await asyncio.to_thread(broker.stop)
        shutil.rmtree(folder, ignore_errors=True)

    assert len(acknowledged) >= 10  # the records sent once the broker was back, at least
    assert sorted(set(log)) == sorted(log), "an offset was given twice"
    assert sorted(acknowledged) == sorted(log)
