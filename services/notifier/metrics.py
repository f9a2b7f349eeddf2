"""The notifier's metrics: delivery attempts and their latency, the deliveries table by
state, overdue acknowledgements, and the audit-log catch-up. Names and label sets are
Vigil's (see :mod:`shared.metrics` for the conventions and what every service shares)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from prometheus_client import Counter, Gauge, Histogram

from shared.metrics import PIPELINE_BUCKETS, seconds_since

DELIVERY_OUTCOMES = ("sent", "failed")

DELIVERY_STATES = ("pending", "failing", "sent", "abandoned", "cancelled")

SIGNAL_TO_DELIVERY = Histogram(
    "vigil_signal_to_delivery_seconds",
    "From the signal being recorded to a successful delivery of it to one person.",
    buckets=PIPELINE_BUCKETS,
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

WORKSPACE_OUT_OF_SCOPE = Counter(
    "vigil_workspace_out_of_scope_total",
    "Workspace requests for something outside the person's scope (answered 404), by page.",
    ["page"],
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


def record_delivery(
    channel: str, outcome: str, signal_recorded_at: datetime | None, *, now: datetime | None = None
) -> None:
    """One delivery attempt; a successful one also observes signal-to-delivery latency."""
    DELIVERIES.labels(channel=channel, outcome=outcome).inc()
    if outcome == "sent" and signal_recorded_at is not None:
        SIGNAL_TO_DELIVERY.observe(seconds_since(signal_recorded_at, now or datetime.now(UTC)))


def initialise_delivery_channels(channels: Iterable[str]) -> None:
    """Export zero counts for every outcome of the channels the notifier sends on."""
    for channel in channels:
        for outcome in DELIVERY_OUTCOMES:
            DELIVERIES.labels(channel=channel, outcome=outcome)
