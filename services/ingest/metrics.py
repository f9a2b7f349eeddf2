"""Ingest's metrics: messages accepted and refused, lab results by analyte, events not yet
in the audit log, and MLLP connections. Names and label sets are Vigil's (see
:mod:`shared.metrics` for the conventions and what every service shares)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge

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

MLLP_CLOSE_REASONS = (
    "peer-connection-cap",
    "tls-handshake-failed",
    "unauthenticated",
    "idle-timeout",
    "incomplete-frame",
)


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


def initialise_mllp_close_reasons() -> None:
    """Export zero counts for every reason an MLLP connection is closed."""
    for reason in MLLP_CLOSE_REASONS:
        MLLP_CONNECTIONS_CLOSED.labels(reason=reason)
