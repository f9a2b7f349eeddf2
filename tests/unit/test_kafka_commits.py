"""A consumer's Kafka commit is a bounded hint: it never stops the consume loop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import UnknownTopicOrPartitionError

from shared.kafka_commits import acknowledging, commit_hint
from shared.supervision import Supervisor


class Message:
    """What the handlers use of FastStream's ackable Kafka message."""

    def __init__(self, ack: Any = None) -> None:
        self._ack = ack
        self.acked = self.nacked = False

    async def ack(self) -> None:
        if self._ack is not None:
            await self._ack()
        self.acked = True

    async def nack(self) -> None:
        self.nacked = True


async def forever() -> None:
    # aiokafka retries a commit of a partition the broker no longer has, for ever
    await asyncio.Event().wait()


async def unknown_partition() -> None:
    raise UnknownTopicOrPartitionError()


@pytest.mark.parametrize("ack", [forever, unknown_partition])
async def test_a_commit_kafka_does_not_take_is_given_up_and_reported(ack: Any) -> None:
    supervisor = Supervisor("test-commit")
    progress = supervisor.watch("consumer")

    assert not await commit_hint(Message(ack), progress, timeout=0.05)  # type: ignore[arg-type]

    (task,) = [t for t in supervisor.report() if t["task"] == "consumer"]
    assert task["step_failures"] == 1
    await supervisor.stop()


async def test_a_handled_batch_is_committed_and_a_failed_one_rewound() -> None:
    supervisor = Supervisor("test-ack")
    handled: list[Message] = []

    async def handle(message: Any) -> None:
        handled.append(message)
        if len(handled) == 2:
            raise RuntimeError("the database went away")

    handler = acknowledging(handle, supervisor.watch("consumer"), timeout=1.0)
    first, second = Message(), Message()
    await handler(first)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="the database went away"):
        await handler(second)  # type: ignore[arg-type]

    assert (first.acked, first.nacked) == (True, False)
    assert (second.acked, second.nacked) == (False, True)
    await supervisor.stop()
