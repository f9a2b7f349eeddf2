"""Publishing events to Kafka and waiting for the broker's acknowledgement (acks=all)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog
from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker

from services.ingest.adapters.receipts import Outgoing

log = structlog.get_logger(__name__)


class BrokerUnavailable(RuntimeError):
    """The broker did not acknowledge the write in time; nothing may be assumed stored."""


class EventPublisher:
    """Publishes envelopes to their topics; connects lazily so ingest starts without Kafka."""

    def __init__(self, broker: KafkaBroker, *, timeout: float) -> None:
        self._broker = broker
        self._timeout = timeout
        self._connected = False
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        async with self._lock:
            if self._connected:
                return
            try:
                await asyncio.wait_for(self._broker.connect(), self._timeout)
            except (KafkaError, OSError, TimeoutError) as error:
                # a half-started producer would keep retrying in the background
                await self._broker.stop()
                raise BrokerUnavailable(f"cannot connect to Kafka: {error}") from error
            self._connected = True

    async def reachable(self, timeout: float = 2.0) -> bool:
        """Whether the broker answers now (for readiness)."""
        try:
            await self.connect()
        except BrokerUnavailable:
            return False
        return await self._broker.ping(timeout)

    async def publish(self, records: Sequence[Outgoing]) -> None:
        """Publish all records; return only when the broker acknowledged every one."""
        await self.connect()
        sends = [
            self._broker.publish(
                record.value, topic=record.topic, key=record.key, headers=record.headers
            )
            for record in records
        ]
        try:
            await asyncio.wait_for(asyncio.gather(*sends), self._timeout)
        except (KafkaError, OSError, TimeoutError) as error:
            log.warning("kafka.publish_failed", error=repr(error), records=len(records))
            raise BrokerUnavailable(
                f"Kafka did not acknowledge {len(records)} record(s) within "
                f"{self._timeout:.0f}s: {error!r}"
            ) from error

    async def publish_each(self, records: Sequence[Outgoing]) -> list[BaseException | None]:
        """Publish every record on its own: per record, None once the broker acknowledged
        it, or what went wrong (a record the broker refuses fails alone). Raises
        BrokerUnavailable only when the client cannot connect at all."""
        await self.connect()

        async def one(record: Outgoing) -> None:
            await asyncio.wait_for(
                self._broker.publish(
                    record.value, topic=record.topic, key=record.key, headers=record.headers
                ),
                self._timeout,
            )

        results = await asyncio.gather(*(one(record) for record in records), return_exceptions=True)
        return [result if isinstance(result, BaseException) else None for result in results]

    async def close(self) -> None:
        await self._broker.stop()
        self._connected = False
