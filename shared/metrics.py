"""Vigil's domain metrics that every service shares, and how to record and sample them.

Per-topic message counts and timings come from FastStream's Prometheus middleware
(``faststream_*``, see ``shared.kafka``); this module holds what only Vigil knows. Names
follow Prometheus conventions: ``vigil_`` prefix, ``_total`` for counters, base units
(``_seconds``). Label values stay from small, known sets (formats, reason codes, analytes,
rule ids, grades, channels), never ids or free text, so series do not grow without bound.

Each service's own metrics live with it (``services/<service>/metrics.py``); here are
the supervised tasks', the event store's, the consumers' lag, the HTTP face's and the
projections', with the helpers they all use.

A labelled metric exports nothing until a label set is used, so what is known at start-up
(the rules of the loaded packs, the delivery channels) is initialised at zero: a panel then
shows "none yet" instead of "no data", and an alert can tell the two apart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import structlog
from aiokafka.structs import TopicPartition
from prometheus_client import Counter, Gauge, Histogram

from shared.failures import failure_traceback

if TYPE_CHECKING:
    from shared.supervision import Progress

log = structlog.get_logger(__name__)

# How often gauges read from the database and the broker (backlogs, lag) are refreshed.
SAMPLE_INTERVAL_SECONDS = 2.0

# Pipeline delays: milliseconds when healthy, minutes when something is stuck.
PIPELINE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

# the HTTP face (every service)
HTTP_CONNECTIONS_CLOSED = Counter(
    "vigil_http_connections_closed_total",
    "HTTP connections a service refused or closed itself, by reason (connection-cap, "
    "header-timeout).",
    ["reason"],
)

HTTP_CLOSE_REASONS = ("connection-cap", "header-timeout")

# event store (every writer)
EVENTSTORE_APPEND_SECONDS = Histogram(
    "vigil_eventstore_append_seconds",
    "Time to append one batch to the event store, inside the caller's transaction.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

EVENTSTORE_APPEND_BATCH_SIZE = Histogram(
    "vigil_eventstore_append_batch_size",
    "Events per append call.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
)

# consumers (safety_rules and notifier)
CONSUMER_LAG = Gauge(
    "vigil_consumer_lag_records",
    "Records on a partition not yet committed by the consumer group (high-water mark minus "
    "committed offset).",
    ["group", "topic", "partition"],
)

# supervised tasks (every service; see shared/supervision.py)
TASK_UP = Gauge(
    "vigil_task_up",
    "1 while a supervised task runs and makes progress; 0 while it is down (restarting "
    "after it died), stuck (no progress while work waits) or stopped.",
    ["service", "task"],
)

TASK_RESTARTS = Counter(
    "vigil_task_restarts_total",
    "Times a supervised task died (any exception) and was started again.",
    ["service", "task"],
)

TASK_LAST_PROGRESS = Gauge(
    "vigil_task_last_progress_timestamp_seconds",
    "Unix time of the last step a supervised task completed.",
    ["service", "task"],
)

TASK_STEP_FAILURES = Counter(
    "vigil_task_step_failures_total",
    "Steps of a task (a batch, a round) that failed as a whole and are tried again: an "
    "outage, or a consumer batch that is rewound.",
    ["service", "task"],
)

TASK_ITEM_FAILURES = Counter(
    "vigil_task_item_failures_total",
    "Single items a task marked failed and went on without: a delivery, a timer, a "
    "digest, an outbox row, a re-driven record, a projection event, a signal.",
    ["service", "task"],
)

PROJECTION_SKIPPED_EVENTS = Gauge(
    "vigil_projection_skipped_events",
    "Events a projection could not apply and skipped since it was last rebuilt: its read "
    "model differs from the audit log until `vigil replay` rebuilds it.",
    ["projection"],
)


def seconds_since(moment: datetime, now: datetime) -> float:
    return max((now - moment).total_seconds(), 0.0)


def record_http_connection_closed(reason: str) -> None:
    """A service refused or closed an HTTP connection; ``reason`` is one of
    HTTP_CLOSE_REASONS."""
    HTTP_CONNECTIONS_CLOSED.labels(reason=reason).inc()


def initialise_http_close_reasons() -> None:
    """Export zero counts for every reason an HTTP connection is closed."""
    for reason in HTTP_CLOSE_REASONS:
        HTTP_CONNECTIONS_CLOSED.labels(reason=reason)


def set_queue(size: Gauge, age: Gauge, count: int, oldest_age_seconds: float | None) -> None:
    """Set a work queue's size and the age of its oldest item (0 when empty)."""
    size.set(count)
    age.set(oldest_age_seconds or 0.0)


@contextmanager
def timed_append(batch_size: int) -> Iterator[None]:
    """Observe one event-store append: its batch size and, if it succeeds, its duration."""
    EVENTSTORE_APPEND_BATCH_SIZE.observe(batch_size)
    started = time.perf_counter()
    yield
    EVENTSTORE_APPEND_SECONDS.observe(time.perf_counter() - started)


class LaggingConsumer(Protocol):
    """What lag sampling needs of a Kafka consumer (aiokafka's AIOKafkaConsumer)."""

    def assignment(self) -> Iterable[TopicPartition]: ...

    def highwater(self, partition: TopicPartition, /) -> int | None: ...

    async def committed(self, partition: TopicPartition, /) -> int | None: ...


_lag_series: dict[str, set[tuple[str, str]]] = {}


async def record_consumer_lag(group: str, consumer: LaggingConsumer | None) -> int:
    """Set the lag of every partition assigned to ``consumer`` (None: not started, so
    nothing is assigned); forget the partitions it no longer has. Returns the total lag."""
    seen: set[tuple[str, str]] = set()
    total = 0
    if consumer is not None:
        for partition in list(consumer.assignment()):
            highwater = consumer.highwater(partition)
            if highwater is None:
                continue  # no fetch answered for it yet
            committed = await consumer.committed(partition) or 0
            labels = (str(partition.topic), str(partition.partition))
            lag = max(highwater - committed, 0)
            CONSUMER_LAG.labels(group, *labels).set(lag)
            total += lag
            seen.add(labels)
    for labels in _lag_series.get(group, set()) - seen:
        CONSUMER_LAG.remove(group, *labels)
    _lag_series[group] = seen
    return total


Sampler = Callable[[], Awaitable[None]]


async def sample_periodically(
    samplers: Iterable[Sampler],
    progress: Progress,
    *,
    interval: float,
    retryable: tuple[type[BaseException], ...],
) -> None:
    """Run each sampler every ``interval`` seconds until cancelled; each round is a step.

    A sampler whose component is away (``retryable``) is logged and tried again next
    round; one that fails otherwise is reported as a failed item (a bug: its traceback
    is in the log). Either way its gauges keep their last value and the other samplers
    go on.
    """
    samplers = list(samplers)
    while True:
        progress.working()
        for sample in samplers:
            name = getattr(sample, "__qualname__", repr(sample))
            try:
                await sample()
            except retryable as error:
                log.warning("metrics.sample_failed", sampler=name, error=repr(error))
            except Exception as error:
                progress.item_failed(f"sampler {name}", error)
                log.error(
                    "metrics.sampler_crashed", sampler=name, traceback=failure_traceback(error)
                )
            else:
                progress.item_succeeded(f"sampler {name}")
        progress.done()
        await asyncio.sleep(interval)


def sampling(
    samplers: Iterable[Sampler], *, retryable: tuple[type[BaseException], ...]
) -> Callable[[Progress], Awaitable[None]]:
    """The task that runs ``samplers`` every SAMPLE_INTERVAL_SECONDS, for a supervisor."""
    samplers = list(samplers)

    async def run(progress: Progress) -> None:
        await sample_periodically(
            samplers, progress, interval=SAMPLE_INTERVAL_SECONDS, retryable=retryable
        )

    return run
