"""Reading back what reached a topic, for tests that publish to a real broker."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer


@dataclass(frozen=True)
class Delivered:
    """A record as a consumer reads it."""

    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


async def records_holding(
    bootstrap: str, topic: str, marker: bytes, *, count: int = 1, timeout: float = 30
) -> list[Delivered]:
    """The records of ``topic``, from its start, whose value holds ``marker`` (an event id,
    a test's own marker), once ``count`` of them arrived; fails after ``timeout`` s."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    found: list[Delivered] = []
    try:
        async with asyncio.timeout(timeout):
            while len(found) < count:
                batches = await consumer.getmany(timeout_ms=500)
                found += [
                    Delivered(r.key, r.value, dict(r.headers))
                    for records in batches.values()
                    for r in records
                    if r.value is not None and marker in r.value
                ]
    finally:
        await consumer.stop()
    return found
