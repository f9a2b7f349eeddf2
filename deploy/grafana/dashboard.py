"""Vigil's Grafana dashboard as code, built with Grafana's own foundation SDK.

``python -m deploy.grafana.dashboard`` writes ``deploy/grafana/dashboards/vigil.json``,
the file Grafana provisions (``provisioning/dashboards/vigil.yml``); a unit test keeps the
committed file equal to what this module builds, and ``tests/e2e/test_observability.py``
runs every panel's query on a real Prometheus scraping the real services.

It lives beside the JSON it generates, not in ``shared/``: no service imports it, and the
SDK is a development dependency (``pip install -e '.[dev]'``), never a runtime one.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, GridPos

DASHBOARD_FILE = Path(__file__).parent / "dashboards" / "vigil.json"
# the uid of the provisioned data source (provisioning/datasources/prometheus.yml)
PROMETHEUS = DataSourceRef(type_val="prometheus", uid="prometheus")
PANEL_WIDTH = 12  # two panels a row on Grafana's 24-column grid
PANEL_HEIGHT = 8
REF_IDS = "ABCDEFGH"


@dataclass(frozen=True)
class Query:
    """One PromQL query of a panel and the legend of its series."""

    expr: str
    legend: str


@dataclass(frozen=True)
class PanelSpec:
    """What one panel shows: a time series (default) or a single stat."""

    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    kind: Literal["timeseries", "stat"] = "timeseries"


def _quantiles(histogram: str, quantiles: tuple[str, ...]) -> tuple[Query, ...]:
    """Quantiles of a histogram over all its series, one query each (p50, p95, ...)."""
    return tuple(
        Query(
            f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket[$__rate_interval])))",
            f"p{round(float(q) * 100)}",
        )
        for q in quantiles
    )


PANELS: tuple[PanelSpec, ...] = (
    PanelSpec(
        "Published per topic",
        "Messages published to each Kafka topic (FastStream middleware), all services.",
        "ops",
        (
            Query(
                "sum by (destination) (rate(faststream_published_messages_total"
                "[$__rate_interval]))",
                "{{destination}}",
            ),
        ),
    ),
    PanelSpec(
        "Consumed per topic",
        "Messages consumed, by service and topic. A batch that spans topics is counted "
        "under its first record's topic.",
        "ops",
        (
            Query(
                "sum by (app_name, handler) (rate(faststream_received_messages_total"
                "[$__rate_interval]))",
                "{{app_name}} {{handler}}",
            ),
        ),
    ),
    PanelSpec(
        "Ingest: accepted and rejected",
        "Messages per second by format (http-json, fhir, mllp); rejections by reason code.",
        "ops",
        (
            Query(
                "sum by (format) (rate(vigil_ingest_accepted_total[$__rate_interval]))",
                "accepted {{format}}",
            ),
            Query(
                "sum by (format, reason) (rate(vigil_ingest_rejected_total[$__rate_interval]))",
                "rejected {{format}} {{reason}}",
            ),
        ),
    ),
    PanelSpec(
        "Lab results by analyte",
        "",
        "ops",
        (
            Query(
                "sum by (analyte) (rate(vigil_lab_results_total[$__rate_interval]))",
                "{{analyte}}",
            ),
        ),
    ),
    PanelSpec(
        "Receipt to signal latency",
        "From Vigil receiving the input to the signal leaving the rules service.",
        "s",
        _quantiles("vigil_receipt_to_signal_seconds", ("0.5", "0.95", "0.99")),
    ),
    PanelSpec(
        "Signal to delivery latency",
        "From the signal being recorded to a successful delivery to one person.",
        "s",
        _quantiles("vigil_signal_to_delivery_seconds", ("0.5", "0.95", "0.99")),
    ),
    PanelSpec(
        "Collection to signal latency",
        "From specimen collection (clinical time) to the signal: includes the lab's own delay.",
        "s",
        _quantiles("vigil_collection_to_signal_seconds", ("0.5", "0.95")),
    ),
    PanelSpec(
        "Event store appends",
        "Append latency (p95, seconds) and mean events per append.",
        "s",
        (
            *_quantiles("vigil_eventstore_append_seconds", ("0.95",)),
            Query(
                "sum(rate(vigil_eventstore_append_batch_size_sum[$__rate_interval])) / "
                "sum(rate(vigil_eventstore_append_batch_size_count[$__rate_interval]))",
                "mean batch size",
            ),
        ),
    ),
    PanelSpec(
        "Consumer lag",
        "Records not yet committed, per consumer group and topic (per partition in the metric).",
        "short",
        (Query("sum by (group, topic) (vigil_consumer_lag_records)", "{{group}} {{topic}}"),),
    ),
    PanelSpec(
        "Backlogs",
        "Work waiting: signals not yet published, and events ingest acknowledged that the "
        "audit log does not have yet (the stall alert watches the age).",
        "short",
        (
            Query("sum(vigil_outbox_backlog)", "signal outbox"),
            Query("sum(vigil_ingest_unrecorded_events)", "acknowledged, not yet in the audit log"),
            Query("max(vigil_ingest_oldest_unrecorded_event_age_seconds)", "oldest unrecorded (s)"),
        ),
    ),
    PanelSpec(
        "Signals by rule",
        "Signals raised, escalated and resolved over the dashboard's time range.",
        "short",
        tuple(
            Query(
                f"sum by (rule) (increase(vigil_signals_{what}_total[$__range]))",
                f"{what} {{{{rule}}}}",
            )
            for what in ("raised", "escalated", "resolved")
        ),
    ),
    PanelSpec(
        "Deliveries by outcome",
        "Delivery attempts by outcome, and the notifier's deliveries by state.",
        "short",
        (
            Query(
                "sum by (channel, outcome) (increase(vigil_deliveries_total[$__rate_interval]))",
                "{{channel}} {{outcome}}",
            ),
            Query(
                "sum by (channel, state) (vigil_deliveries_by_state)",
                "{{channel}} {{state}} (in table)",
            ),
        ),
    ),
    PanelSpec(
        "Dead letters",
        "Input sent to the dead-letter topic, by the service that rejected it.",
        "short",
        (
            Query(
                "sum by (app_name) (increase(faststream_published_messages_total"
                '{destination="vigil.dead-letters.v1"}[$__rate_interval]))',
                "{{app_name}}",
            ),
        ),
    ),
    PanelSpec(
        "Overdue acknowledgements",
        "Signals past their acknowledgement deadline.",
        "short",
        (Query("max(vigil_acknowledgements_overdue)", "overdue"),),
        kind="stat",
    ),
    PanelSpec(
        "Services up",
        "1 when Prometheus can scrape the service.",
        "short",
        (Query('up{job=~"vigil-.*"}', "{{job}}"),),
        kind="stat",
    ),
    PanelSpec(
        "Batches processed by status",
        "Consumed batches by outcome: acked, or nacked/error (rewound and retried).",
        "short",
        (
            Query(
                "sum by (app_name, status) (increase("
                "faststream_received_processed_messages_total[$__rate_interval]))",
                "{{app_name}} {{status}}",
            ),
        ),
    ),
    PanelSpec(
        "Oldest undelivered signal",
        "Age of the oldest protocol-threshold or serious signal no delivery has reached, "
        "measured by the rules service from the audit log (the VigilSignalUndelivered "
        "alert), and how many such signals wait.",
        "s",
        (
            Query("max(vigil_oldest_undelivered_signal_age_seconds)", "oldest (s)"),
            Query("max(vigil_undelivered_signals)", "waiting"),
        ),
    ),
    PanelSpec(
        "Background tasks",
        "Per service and task: up (1) or down/stuck (0), restarts and failed items; /tasks "
        "on each service says why.",
        "short",
        (
            Query("min by (service, task) (vigil_task_up)", "{{service}} {{task}} up"),
            Query(
                "sum by (service, task) (increase(vigil_task_restarts_total[$__rate_interval]))",
                "{{service}} {{task}} restarts",
            ),
            Query(
                "sum by (service, task) "
                "(increase(vigil_task_item_failures_total[$__rate_interval]))",
                "{{service}} {{task}} failed items",
            ),
        ),
    ),
)


def _panel(number: int, spec: PanelSpec) -> timeseries.Panel | stat.Panel:
    """The panel builder of ``spec``, the ``number``-th (from 0) on the grid."""
    panel = timeseries.Panel() if spec.kind == "timeseries" else stat.Panel()
    panel = (
        panel.id(number + 1)
        .title(spec.title)
        .datasource(PROMETHEUS)
        .grid_pos(
            GridPos(
                h=PANEL_HEIGHT,
                w=PANEL_WIDTH,
                x=(number % 2) * PANEL_WIDTH,
                y=(number // 2) * PANEL_HEIGHT,
            )
        )
        .unit(spec.unit)
    )
    if spec.description:
        panel = panel.description(spec.description)
    for ref_id, query in zip(REF_IDS, spec.queries, strict=False):
        panel = panel.with_target(
            Dataquery()
            .ref_id(ref_id)
            .datasource(PROMETHEUS)
            .expr(query.expr)
            .legend_format(query.legend)
        )
    return panel


def build_dashboard() -> Dashboard:
    """The 'Vigil pipeline' dashboard: throughput, latency, lag, signals, deliveries and
    dead letters of the three services, two panels a row."""
    assert all(len(spec.queries) <= len(REF_IDS) for spec in PANELS)
    dashboard = (
        Dashboard("Vigil pipeline")
        .uid("vigil-overview")
        .description(
            "Throughput, latency, lag, signals, deliveries and dead letters of Vigil's "
            "three services."
        )
        .tags(["vigil"])
        .timezone("utc")
        .editable()
        .refresh("30s")
        .time("now-6h", "now")
        .version(1)
    )
    for number, spec in enumerate(PANELS):
        dashboard = dashboard.with_panel(_panel(number, spec))
    return dashboard


def render_dashboard() -> str:
    """The dashboard's JSON as committed in ``dashboards/vigil.json``."""
    return json.dumps(build_dashboard().build(), cls=JSONEncoder, indent=2) + "\n"


def main(argv: list[str]) -> int:
    """Write the dashboard file (or, with ``--check``, say whether it is current)."""
    rendered = render_dashboard()
    if argv == ["--check"]:
        current = DASHBOARD_FILE.read_text(encoding="utf-8") == rendered
        print(f"{DASHBOARD_FILE}: {'current' if current else 'stale: run without --check'}")
        return 0 if current else 1
    DASHBOARD_FILE.write_text(rendered, encoding="utf-8")
    print(f"wrote {DASHBOARD_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
