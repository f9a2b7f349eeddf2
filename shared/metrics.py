"""Vigil's domain metrics: every metric object of every service, and how to record them.

Per-topic message counts and timings come from FastStream's Prometheus middleware
(``faststream_*``, see ``shared.kafka``); this module holds what only Vigil knows. Names
follow Prometheus conventions: ``vigil_`` prefix, ``_total`` for counters, base units
(``_seconds``). Label values stay from small, known sets (formats, reason codes, analytes,
rule ids, grades, channels), never ids or free text, so series do not grow without bound.

A labelled metric exports nothing until a label set is used, so what is known at start-up
(the rules of the loaded packs, the delivery channels) is initialised at zero: a panel then
shows "none yet" instead of "no data", and an alert can tell the two apart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

import structlog
from aiokafka.structs import TopicPartition
from prometheus_client import Counter, Gauge, Histogram

from shared.failures import failure_traceback

if TYPE_CHECKING:
    from shared.supervision import Progress

log = structlog.get_logger(__name__)

NO_GRADE = "none"
# How often gauges read from the database and the broker (backlogs, lag) are refreshed.
SAMPLE_INTERVAL_SECONDS = 2.0
DELIVERY_OUTCOMES = ("sent", "failed")
DELIVERY_STATES = ("pending", "failing", "sent", "abandoned", "cancelled")

# Clinical delays: from minutes (a point-of-care result) to weeks (a late lab upload).
_CLINICAL_BUCKETS = (
    60,
    300,
    900,
    3600,
    4 * 3600,
    12 * 3600,
    86400,
    3 * 86400,
    7 * 86400,
    30 * 86400,
)
# Pipeline delays: milliseconds when healthy, minutes when something is stuck.
_PIPELINE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

# ingest
INGEST_ACCEPTED = Counter(
    "vigil_ingest_accepted_total",
    "Messages ingest stored, published and acknowledged, by format (http-json, fhir, mllp).",
    ["format"],
)
INGEST_REJECTED = Counter(
    "vigil_ingest_rejected_total",
    "Messages ingest did not accept, by format and reason code (invalid input is also "
    "dead-lettered; 'unavailable' means the database or broker did not answer).",
    ["format", "reason"],
)
LAB_RESULTS = Counter(
    "vigil_lab_results_total",
    "Lab results accepted by ingest, by analyte ('unmapped' when not in the catalogue).",
    ["analyte"],
)
INGEST_UNRECORDED_EVENTS = Gauge(
    "vigil_ingest_unrecorded_events",
    "Events ingest acknowledged to a sender that have not reached the audit log yet.",
)
INGEST_OLDEST_UNRECORDED_AGE = Gauge(
    "vigil_ingest_oldest_unrecorded_event_age_seconds",
    "Age of the oldest acknowledged event not yet in the audit log (0 when none): grows "
    "when the pipeline behind ingest is stalled.",
)

MLLP_CONNECTIONS_CLOSED = Counter(
    "vigil_mllp_connections_closed_total",
    "MLLP connections ingest refused or closed itself, by reason (peer-connection-cap, "
    "tls-handshake-failed, unauthenticated, idle-timeout, incomplete-frame).",
    ["reason"],
)
MLLP_OPEN_CONNECTIONS = Gauge("vigil_mllp_open_connections", "MLLP connections open now.")
HTTP_CONNECTIONS_CLOSED = Counter(
    "vigil_http_connections_closed_total",
    "HTTP connections a service refused or closed itself, by reason (connection-cap, "
    "header-timeout).",
    ["reason"],
)
HTTP_CLOSE_REASONS = ("connection-cap", "header-timeout")
MLLP_CLOSE_REASONS = (
    "peer-connection-cap",
    "tls-handshake-failed",
    "unauthenticated",
    "idle-timeout",
    "incomplete-frame",
)

# safety_rules
SIGNALS_RAISED = Counter(
    "vigil_signals_raised_total", "Safety signals raised, by rule and grade.", ["rule", "grade"]
)
SIGNALS_ESCALATED = Counter(
    "vigil_signals_escalated_total",
    "Open safety signals whose grade worsened, by rule and new grade.",
    ["rule", "grade"],
)
SIGNALS_RESOLVED = Counter(
    "vigil_signals_resolved_total",
    "Safety signals resolved (values back in range), by rule and last grade.",
    ["rule", "grade"],
)
COLLECTION_TO_SIGNAL = Histogram(
    "vigil_collection_to_signal_seconds",
    "From specimen collection (clinical time) to the signal leaving the rules service.",
    buckets=_CLINICAL_BUCKETS,
)
RECEIPT_TO_SIGNAL = Histogram(
    "vigil_receipt_to_signal_seconds",
    "From receipt of the input by Vigil (its event time) to the signal leaving the rules service.",
    buckets=_PIPELINE_BUCKETS,
)
OUTBOX_BACKLOG = Gauge(
    "vigil_outbox_backlog", "Committed outbox entries not yet published to Kafka."
)
OUTBOX_OLDEST_AGE = Gauge(
    "vigil_outbox_oldest_pending_age_seconds",
    "Age of the oldest outbox entry not yet published (0 when none).",
)

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

# consumers
POISON_RECORDS = Counter(
    "vigil_rules_poison_records_total",
    "Records that made a batch fail by their content, found by splitting the batch and "
    "dead-lettered; by the step they failed at (judged, stored, projected, or known: "
    "dead-lettered before).",
    ["step"],
)
CONSUMER_LAG = Gauge(
    "vigil_consumer_lag_records",
    "Records on a partition not yet committed by the consumer group (high-water mark minus "
    "committed offset).",
    ["group", "topic", "partition"],
)

# notifier
SIGNAL_TO_DELIVERY = Histogram(
    "vigil_signal_to_delivery_seconds",
    "From the signal being recorded to a successful delivery of it to one person.",
    buckets=_PIPELINE_BUCKETS,
)
DELIVERIES = Counter(
    "vigil_deliveries_total",
    "Delivery attempts, by channel (email, webhook) and outcome (sent, failed).",
    ["channel", "outcome"],
)
DELIVERIES_BY_STATE = Gauge(
    "vigil_deliveries_by_state",
    "Deliveries in the notifier's table, by channel and state (pending, failing, sent).",
    ["channel", "state"],
)
ACKNOWLEDGEMENTS_OVERDUE = Gauge(
    "vigil_acknowledgements_overdue",
    "Signals past their acknowledgement deadline and not acknowledged.",
)
CATCH_UP_BEHIND_SECONDS = Gauge(
    "vigil_notifier_catch_up_behind_seconds",
    "Age of the oldest signal event of the audit log that the notifier's catch-up has not "
    "read yet; 0 when none. Healthy: below the grace period plus one poll.",
)
CATCH_UP_PENDING_EVENTS = Gauge(
    "vigil_notifier_catch_up_pending_events",
    "Signal events of the audit log after the notifier's catch-up checkpoint.",
)
CATCH_UP_DELIVERIES = Counter(
    "vigil_notifier_catch_up_deliveries_total",
    "Deliveries the notifier's catch-up planned from the audit log because the Kafka fast "
    "path had not: signal events the broker did not bring in time (or forgot).",
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

# alerting about alerting (safety_rules' watchdog: it does not depend on the notifier)
OLDEST_UNDELIVERED_SIGNAL_AGE = Gauge(
    "vigil_oldest_undelivered_signal_age_seconds",
    "Age of the oldest protocol-threshold or serious signal nobody has been told about "
    "(no delivery succeeded, not acknowledged, not retracted); 0 when none. Read from the "
    "database by the rules service, so it grows even when the notifier is dead.",
)
UNDELIVERED_SIGNALS = Gauge(
    "vigil_undelivered_signals",
    "Protocol-threshold and serious signals nobody has been told about yet.",
)
WATCHDOG_REPORTS = Counter(
    "vigil_watchdog_reports_total",
    "Undelivered signals the watchdog reported on its second channel, by channel.",
    ["channel"],
)


def _seconds_since(moment: datetime, now: datetime) -> float:
    return max((now - moment).total_seconds(), 0.0)


def grade_label(grade: object) -> str:
    """The label value of a signal's grade (a CTCAE grade, or ``none``)."""
    return NO_GRADE if grade is None else str(grade)


def record_ingest_accepted(message_format: str, analytes: Iterable[str]) -> None:
    """One message accepted; ``analytes`` names each lab result it carried."""
    INGEST_ACCEPTED.labels(format=message_format).inc()
    for analyte in analytes:
        LAB_RESULTS.labels(analyte=analyte).inc()


def initialise_ingest_formats(formats: Iterable[str]) -> None:
    """Export zero counts of accepted messages for every format ingest receives."""
    for message_format in formats:
        INGEST_ACCEPTED.labels(format=message_format)


def initialise_ingest_rejections(formats: Iterable[str], reasons: Iterable[str]) -> None:
    """Export zero counts of the refusals every format may meet (authentication, scope,
    limits), so an alert on them tells "none yet" from "no data"."""
    reasons = list(reasons)
    for message_format in formats:
        for reason in reasons:
            INGEST_REJECTED.labels(format=message_format, reason=reason)


def record_ingest_rejected(message_format: str, reason: str) -> None:
    """One message not accepted; ``reason`` is a short code, never the message text."""
    INGEST_REJECTED.labels(format=message_format, reason=reason).inc()


def record_mllp_connection_closed(reason: str) -> None:
    """Ingest refused or closed an MLLP connection; ``reason`` is one of MLLP_CLOSE_REASONS."""
    MLLP_CONNECTIONS_CLOSED.labels(reason=reason).inc()


def record_http_connection_closed(reason: str) -> None:
    """A service refused or closed an HTTP connection; ``reason`` is one of
    HTTP_CLOSE_REASONS."""
    HTTP_CONNECTIONS_CLOSED.labels(reason=reason).inc()


def initialise_http_close_reasons() -> None:
    """Export zero counts for every reason an HTTP connection is closed."""
    for reason in HTTP_CLOSE_REASONS:
        HTTP_CONNECTIONS_CLOSED.labels(reason=reason)


def initialise_mllp_close_reasons() -> None:
    """Export zero counts for every reason an MLLP connection is closed."""
    for reason in MLLP_CLOSE_REASONS:
        MLLP_CONNECTIONS_CLOSED.labels(reason=reason)


def record_signal(
    rule: str,
    grade: object,
    collected_at: datetime,
    received_at: datetime | None,
    *,
    now: datetime | None = None,
) -> None:
    """A signal was raised: count it and observe how late it is after collection and
    after Vigil received its input (when known)."""
    now = now or datetime.now(UTC)
    SIGNALS_RAISED.labels(rule=rule, grade=grade_label(grade)).inc()
    COLLECTION_TO_SIGNAL.observe(_seconds_since(collected_at, now))
    if received_at is not None:
        RECEIPT_TO_SIGNAL.observe(_seconds_since(received_at, now))


def record_escalation(rule: str, grade: object) -> None:
    """An open signal's grade worsened."""
    SIGNALS_ESCALATED.labels(rule=rule, grade=grade_label(grade)).inc()


def record_resolution(rule: str, grade: object) -> None:
    """A signal was resolved."""
    SIGNALS_RESOLVED.labels(rule=rule, grade=grade_label(grade)).inc()


def initialise_rules(rule_ids: Iterable[str]) -> None:
    """Export zero counts for the rules of the loaded packs (grade ``none``)."""
    for rule in rule_ids:
        for counter in (SIGNALS_RAISED, SIGNALS_ESCALATED, SIGNALS_RESOLVED):
            counter.labels(rule=rule, grade=NO_GRADE)


def record_delivery(
    channel: str, outcome: str, signal_recorded_at: datetime | None, *, now: datetime | None = None
) -> None:
    """One delivery attempt; a successful one also observes signal-to-delivery latency."""
    DELIVERIES.labels(channel=channel, outcome=outcome).inc()
    if outcome == "sent" and signal_recorded_at is not None:
        SIGNAL_TO_DELIVERY.observe(_seconds_since(signal_recorded_at, now or datetime.now(UTC)))


def initialise_delivery_channels(channels: Iterable[str]) -> None:
    """Export zero counts for every outcome of the channels the notifier sends on."""
    for channel in channels:
        for outcome in DELIVERY_OUTCOMES:
            DELIVERIES.labels(channel=channel, outcome=outcome)


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
