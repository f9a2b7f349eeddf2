"""The EventPublisher contract: Kafka's publisher (on a real Tansu broker) and the
in-memory one behave alike.

Each test runs against both (``publisher_kind``). The Kafka broker is private to this
module, since the outage test stops and restarts it; each test tells its own records
apart by a marker in their values.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest
from aiokafka.errors import MessageSizeTooLargeError

from services.ingest.adapters.in_memory import InMemoryEventPublisher
from services.ingest.adapters.publisher import KafkaEventPublisher
from services.ingest.handlers.ports import BrokerUnavailable, EventPublisher, Outgoing
from services.settings import VigilSettings
from shared.events.topics import DEAD_LETTERS, LAB_RESULTS
from shared.failures import is_outage
from shared.kafka import ensure_topics, make_broker
from tests.support import components
from tests.support.topics import Delivered, records_holding
from tests.support.waiting import eventually
from vigil.devstack.tansu import TansuBroker

pytestmark = pytest.mark.integration

TOO_LARGE = b"x" * 2_000_000  # over the Kafka client's request size: refused for itself


@dataclass
class Harness:
    """One implementation of the port, what reached its topics, and its broker's switch."""

    publisher: EventPublisher
    delivered: Callable[[str, bytes, int], Awaitable[list[Delivered]]]
    """The records of ``topic`` whose value holds ``marker``, once ``count`` arrived."""
    stop_broker: Callable[[], Awaitable[None]]
    start_broker: Callable[[], Awaitable[None]]


async def read_back(bootstrap: str, topic: str, marker: bytes, count: int) -> list[Delivered]:
    return await records_holding(bootstrap, topic, marker, count=count)


@pytest.fixture(scope="module")
def tansu() -> Iterator[TansuBroker]:
    with components.tansu() as broker:
        yield broker


async def _kafka(tansu: TansuBroker) -> AsyncIterator[Harness]:
    settings = VigilSettings(kafka_bootstrap=tansu.bootstrap, kafka_partitions=1)
    publisher = KafkaEventPublisher(
        make_broker(settings, client_id="test-publisher-contract"),
        timeout=3,
        ensure_topics=functools.partial(ensure_topics, settings),
    )
    try:
        yield Harness(
            publisher,
            functools.partial(read_back, tansu.bootstrap),
            lambda: asyncio.to_thread(tansu.stop),
            lambda: asyncio.to_thread(tansu.start),
        )
    finally:
        if tansu.process is None or tansu.process.poll() is not None:
            await asyncio.to_thread(tansu.start)  # a test stopped it and failed before
        await publisher.close()


async def _in_memory() -> AsyncIterator[Harness]:
    publisher = InMemoryEventPublisher()

    async def delivered(topic: str, marker: bytes, count: int) -> list[Delivered]:
        found = [r for r in publisher.topic(topic) if marker in r.value]
        assert len(found) >= count, f"{count} record(s) expected on {topic}, found {found}"
        return [
            Delivered(r.key, r.value, {k: v.encode() for k, v in r.headers.items()}) for r in found
        ]

    async def switch(available: bool) -> None:
        publisher.available = available

    yield Harness(
        publisher, delivered, functools.partial(switch, False), functools.partial(switch, True)
    )


@pytest.fixture(params=["kafka", "in-memory"])
def publisher_kind(request: pytest.FixtureRequest) -> TansuBroker | None:
    """The module's Tansu broker for Kafka's publisher (started only when a test runs
    against it); None for the in-memory publisher."""
    return request.getfixturevalue("tansu") if request.param == "kafka" else None


@pytest.fixture
async def harness(publisher_kind: TansuBroker | None) -> AsyncIterator[Harness]:
    made = _in_memory() if publisher_kind is None else _kafka(publisher_kind)
    async for running in made:
        yield running


@pytest.fixture
def marker() -> bytes:
    """What this test's record values carry, so it finds its own."""
    return uuid.uuid4().hex.encode()


def record(marker: bytes, n: int, *, topic: str = LAB_RESULTS, key: bytes = b"S/1") -> Outgoing:
    value = b'{"marker": "' + marker + b'", "n": ' + str(n).encode() + b"}"
    return Outgoing(uuid.uuid4(), topic, key, value, {"content-type": "application/json"})


async def test_published_records_arrive_with_their_key_value_and_headers(
    harness: Harness, marker: bytes
) -> None:
    sent = record(marker, 1, key=b"NCT05262686/01-003")

    await harness.publisher.publish([sent])

    (delivered,) = await harness.delivered(LAB_RESULTS, marker, 1)
    assert (delivered.key, delivered.value) == (b"NCT05262686/01-003", sent.value)
    assert delivered.headers["content-type"] == b"application/json"


async def test_records_go_to_their_own_topics(harness: Harness, marker: bytes) -> None:
    await harness.publisher.publish([record(marker, 1), record(marker, 2, topic=DEAD_LETTERS)])

    assert [d.value for d in await harness.delivered(DEAD_LETTERS, marker, 1)] == [
        record(marker, 2).value
    ]
    assert [d.value for d in await harness.delivered(LAB_RESULTS, marker, 1)] == [
        record(marker, 1).value
    ]


async def test_records_of_one_key_arrive_in_the_order_published(
    harness: Harness, marker: bytes
) -> None:
    sent = [record(marker, n) for n in range(20)]

    await harness.publisher.publish(sent)

    assert [d.value for d in await harness.delivered(LAB_RESULTS, marker, 20)] == [
        r.value for r in sent
    ]


async def test_publishing_each_acknowledges_every_record_on_its_own(
    harness: Harness, marker: bytes
) -> None:
    assert await harness.publisher.publish_each([record(marker, 1), record(marker, 2)]) == [
        None,
        None,
    ]
    assert len(await harness.delivered(LAB_RESULTS, marker, 2)) == 2


async def test_a_record_the_broker_refuses_fails_alone_and_not_as_an_outage(
    harness: Harness, marker: bytes
) -> None:
    too_large = Outgoing(uuid.uuid4(), LAB_RESULTS, b"S/1", marker + TOO_LARGE)

    first, refused, last = await harness.publisher.publish_each(
        [record(marker, 1), too_large, record(marker, 3)]
    )

    assert (first, last) == (None, None)
    assert isinstance(refused, MessageSizeTooLargeError)
    assert not is_outage(refused)
    delivered = await harness.delivered(LAB_RESULTS, marker, 2)
    assert sorted(d.value for d in delivered) == [record(marker, 1).value, record(marker, 3).value]


async def test_publishing_a_record_the_broker_refuses_is_not_acknowledged(
    harness: Harness, marker: bytes
) -> None:
    with pytest.raises(BrokerUnavailable, match="did not acknowledge 1 record"):
        await harness.publisher.publish([Outgoing(uuid.uuid4(), LAB_RESULTS, None, TOO_LARGE)])


async def test_a_broker_away_is_unreachable_refuses_publication_and_is_used_again_when_back(
    harness: Harness, marker: bytes
) -> None:
    await harness.publisher.publish([record(marker, 1)])
    assert await harness.publisher.reachable()

    await harness.stop_broker()
    assert not await harness.publisher.reachable(timeout=1)
    with pytest.raises(BrokerUnavailable, match=r"(did not acknowledge|cannot connect)"):
        await harness.publisher.publish([record(marker, 2)])

    await harness.start_broker()

    async def published_again() -> bool:
        try:
            await harness.publisher.publish([record(marker, 3)])
        except BrokerUnavailable:
            return False
        return True

    await eventually(published_again, timeout=60, what="publication after the broker is back")
    assert await harness.publisher.reachable()
    assert record(marker, 3).value in [
        d.value for d in await harness.delivered(LAB_RESULTS, marker, 1)
    ]
