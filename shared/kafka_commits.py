"""Committing a consumed batch to Kafka without ever waiting on it for ever.

Vigil's consumers keep their positions with the data in PostgreSQL (or get exactly-once
effects from event ids), so Kafka's committed offsets are only a hint. aiokafka retries a
commit that fails with a retriable error (an unknown topic or partition, say, after the
broker re-created a topic with fewer partitions) for ever, inside the consume loop: the
handler is then never called again. So a consumer acknowledges its batches itself
(``AckPolicy.MANUAL``), each commit bounded by a timeout: a commit that fails is logged and
reported to the task's supervisor (``/tasks`` shows the last error), and the consumer goes
on; aiokafka rejoins the group when the partitions of its topics change, and the next
commit covers the offsets this one missed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from aiokafka.errors import KafkaError
from faststream.kafka.annotations import KafkaMessage

from shared.supervision import Progress

log = structlog.get_logger(__name__)
COMMIT_TIMEOUT_SECONDS = 10.0


async def commit_hint(
    message: KafkaMessage,
    progress: Progress | None = None,
    *,
    timeout: float = COMMIT_TIMEOUT_SECONDS,
) -> bool:
    """Commit the consumer's offsets after ``message`` was handled; False (logged, and
    reported to ``progress``) when Kafka did not take the commit within ``timeout``."""
    return await bounded_commit(message.ack(), progress, timeout=timeout)


async def bounded_commit(
    commit: Awaitable[object],
    progress: Progress | None = None,
    *,
    timeout: float = COMMIT_TIMEOUT_SECONDS,
    also: tuple[type[Exception], ...] = (),
) -> bool:
    """Await an offset commit for at most ``timeout``; False (logged, and reported to
    ``progress``) when Kafka did not take it, or it failed with one of ``also`` (a partition
    no longer assigned, say)."""
    try:
        await asyncio.wait_for(commit, timeout)
    except (KafkaError, TimeoutError, *also) as error:
        log.warning("kafka.commit_failed", error=repr(error), timeout_seconds=timeout)
        if progress is not None:
            progress.step_failed(error)
        return False
    return True


def acknowledging(
    handle: Callable[[KafkaMessage], Awaitable[None]],
    progress: Progress,
    *,
    timeout: float = COMMIT_TIMEOUT_SECONDS,
) -> Callable[[KafkaMessage], Awaitable[None]]:
    """A handler for a subscriber with ``AckPolicy.MANUAL``: handle the batch as one step
    of ``progress``; then commit it (bounded, see :func:`commit_hint`), or, when the
    handler failed, rewind to the batch's first records (it is consumed again) and
    re-raise."""

    async def handler(message: KafkaMessage) -> None:
        try:
            with progress.step():
                await handle(message)
        except BaseException:
            await message.nack()
            raise
        await commit_hint(message, progress, timeout=timeout)

    return handler
