"""The shipped dashboard, alert rules and scrape configuration, checked without servers
(tests/e2e/test_observability.py runs them on a real Prometheus)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from prometheus_client import REGISTRY

import services.ingest.metrics
import services.notifier.metrics
import services.safety_rules.metrics  # noqa: F401
import shared.metrics  # noqa: F401
from shared.yaml_files import load_yaml
from tests.support.prometheus import ALERT_RULES, SCRAPE_CONFIG, Threshold
from tests.support.services import REPO

DEPLOY = REPO / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "vigil.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "vigil.yml"
COMPOSE = REPO / "docker-compose.yml"


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def alert_rules() -> list[dict[str, Any]]:
    groups = load_yaml(ALERT_RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def all_exprs() -> list[str]:
    panels = [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]
    return panels + [rule["expr"] for rule in alert_rules()]


def vigil_metric_names() -> set[str]:
    """Every sample name Vigil's registry can export (counters as *_total, histograms as
    *_bucket/_sum/_count)."""
    names = set()
    for metric in REGISTRY.collect():
        names.add(metric.name)
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
        names.update(metric.name + suffix for suffix in suffixes.get(metric.type, []))
    return names


def test_every_panel_queries_the_provisioned_prometheus() -> None:
    uid = load_yaml(DATASOURCES.read_text())["datasources"][0]["uid"]
    panels = dashboard()["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), f"{panel['title']} has an empty query"
            assert target["datasource"]["uid"] == uid


@pytest.mark.parametrize(
    "topic",
    [
        "throughput",
        "latency",
        "lag",
        "signals by rule",
        "deliveries by outcome",
        "dead letters",
        "overdue acknowledgements",
    ],
)
def test_dashboard_shows_what_operators_watch(topic: str) -> None:
    keywords = {
        "throughput": "faststream_published_messages_total",
        "latency": "histogram_quantile",
        "lag": "vigil_consumer_lag_records",
        "signals by rule": "vigil_signals_raised_total",
        "deliveries by outcome": "vigil_deliveries_total",
        "dead letters": "vigil.dead-letters.v1",
        "overdue acknowledgements": "vigil_acknowledgements_overdue",
    }
    assert any(keywords[topic] in expr for expr in all_exprs())


def test_every_vigil_metric_queried_is_defined() -> None:
    known = vigil_metric_names()
    used = {name for expr in all_exprs() for name in re.findall(r"\bvigil_[a-z_]+\b", expr)}
    assert used - known == set()


@pytest.mark.parametrize(
    "alert",
    [
        "VigilPipelineStalled",
        "VigilConsumerLagGrowing",
        "VigilDeadLettersRising",
        "VigilDeliveriesFailing",
        "VigilAcknowledgementsOverdue",
        "VigilSignalUndelivered",
        "VigilTaskDown",
        "VigilProjectionDiverged",
        "VigilNotifierCatchUpBehind",
    ],
)
def test_alert_is_shipped_with_a_measure_and_a_threshold(alert: str) -> None:
    rule = next(rule for rule in alert_rules() if rule.get("alert") == alert)
    Threshold.of(rule["expr"])  # the form the integration test relies on
    assert rule["labels"]["severity"] in ("page", "warning")
    assert rule["annotations"]["summary"]


def test_scrape_config_loads_the_alert_rules_and_scrapes_three_services() -> None:
    config = load_yaml(SCRAPE_CONFIG.read_text())
    assert config["rule_files"] == [ALERT_RULES.name]
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == {"vigil-ingest", "vigil-safety-rules", "vigil-notifier"}


def test_compose_mounts_the_prometheus_and_grafana_files() -> None:
    services = load_yaml(COMPOSE.read_text())["services"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    grafana = services["grafana"]["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana
    dashboards = load_yaml(PROVIDERS.read_text())["providers"][0]["options"]["path"]
    assert f"./deploy/grafana/dashboards:{dashboards}:ro" in grafana
