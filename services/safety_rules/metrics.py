"""The rules service's metrics: signals raised, escalated and resolved and how late they
are, the outbox, poison records, and the watchdog's view of undelivered signals. Names
and label sets are Vigil's (see :mod:`shared.metrics` for the conventions and what every
service shares)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from prometheus_client import Counter, Gauge, Histogram

from shared.metrics import PIPELINE_BUCKETS, seconds_since

NO_GRADE = "none"

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

# signals (counted as the outbox relay publishes them)
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
    buckets=PIPELINE_BUCKETS,
)

OUTBOX_BACKLOG = Gauge(
    "vigil_outbox_backlog", "Committed outbox entries not yet published to Kafka."
)

OUTBOX_OLDEST_AGE = Gauge(
    "vigil_outbox_oldest_pending_age_seconds",
    "Age of the oldest outbox entry not yet published (0 when none).",
)

# the facts consumer
POISON_RECORDS = Counter(
    "vigil_rules_poison_records_total",
    "Records that made a batch fail by their content, found by splitting the batch and "
    "dead-lettered; by the step they failed at (judged, stored, projected, or known: "
    "dead-lettered before).",
    ["step"],
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


def grade_label(grade: object) -> str:
    """The label value of a signal's grade (a CTCAE grade, or ``none``)."""
    return NO_GRADE if grade is None else str(grade)


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
    COLLECTION_TO_SIGNAL.observe(seconds_since(collected_at, now))
    if received_at is not None:
        RECEIPT_TO_SIGNAL.observe(seconds_since(received_at, now))


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
