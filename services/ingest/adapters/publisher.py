"""Publishing events to Kafka and waiting for the broker's acknowledgement (acks=all): the
``EventPublisher`` port on Kafka."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import structlog
from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker

from services.ingest.handlers.ports import BrokerUnavailable, Outgoing
from shared.kafka import TopicCreationRefused

log = structlog.get_logger(__name__)


class KafkaEventPublisher:
    """The ``EventPublisher`` on Kafka; connects lazily so ingest starts without Kafka.

    ``ensure_topics`` creates missing topics with the configured partition count through
    the admin client; it runs before the first publish after connecting and after a publish
    failed (a broker that forgot its topics, say), so that a topic is created by Vigil
    rather than by the broker's auto-creation with its own default partition count. (Tansu
    cannot be told not to auto-create, and aiokafka's producer always allows it in its
    metadata requests: the consumers cope with a partition count that changed anyway.)
    """

    def __init__(
        self,
        broker: KafkaBroker,
        *,
        timeout: float,
        ensure_topics: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._broker = broker
        self._timeout = timeout
        self._connected = False
        self._lock = asyncio.Lock()
        self._ensure_topics = ensure_topics
        self._topics_checked = ensure_topics is None

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

    async def _check_topics(self) -> None:
        """Create missing topics (configured partitions) if not checked since a failure."""
        if self._topics_checked or self._ensure_topics is None:
            return
        try:
            await asyncio.wait_for(self._ensure_topics(), self._timeout)
        except (KafkaError, OSError, TimeoutError, TopicCreationRefused) as error:
            raise BrokerUnavailable(f"cannot check Kafka's topics: {error!r}") from error
        self._topics_checked = True

    def _failed(self) -> None:
        self._topics_checked = self._ensure_topics is None

    async def publish(self, records: Sequence[Outgoing]) -> None:
        """Publish all records; return only when the broker acknowledged every one."""
        await self.connect()
        await self._check_topics()

        async def all_acknowledged() -> None:
            # each record is queued with the producer at once (no task per record), then
            # the acknowledgements are awaited together
            acks = [
                await self._broker.publish(
                    record.value,
                    topic=record.topic,
                    key=record.key,
                    headers=record.headers,
                    no_confirm=True,
                )
                for record in records
            ]
            await asyncio.gather(*acks)

        try:
            await asyncio.wait_for(all_acknowledged(), self._timeout)
        except (KafkaError, OSError, TimeoutError) as error:
            self._failed()
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
        await self._check_topics()

        async def one(record: Outgoing) -> None:
            await asyncio.wait_for(
                self._broker.publish(
                    record.value, topic=record.topic, key=record.key, headers=record.headers
                ),
                self._timeout,
            )

        results = await asyncio.gather(*(one(record) for record in records), return_exceptions=True)
        if any(isinstance(result, BaseException) for result in results):
            self._failed()
        return [result if isinstance(result, BaseException) else None for result in results]

    async def close(self) -> None:
        await self._broker.stop()
        self._connected = False
