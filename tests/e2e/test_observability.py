"""The shipped Prometheus configuration, alert rules and Grafana dashboard, proven on a real
Prometheus scraping real services.

The services here are a private stack (own broker, own database) because the stall test
stops the rules service, which the session's shared services must survive.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from shared.yaml_files import load_yaml
from tests.e2e.test_haemoglobin_alert import (
    about,
    enrolment,
    haemoglobin,
    investigators_of,
    new_subject_id,
)
from tests.support import components
from tests.support.components import as_service_role, create_database, drop_database
from tests.support.mail import MailCatcher
from tests.support.prometheus import (
    ALERT_RULES,
    SCRAPE_CONFIG,
    RunningPrometheus,
    Threshold,
    config_for_test,
    promtool,
    rules_for_test,
    running_prometheus,
)
from tests.support.services import (
    METRICS_TOKEN,
    REPO,
    RunningServices,
    running_services,
    service_env,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "vigil.json"
STALLED = "VigilPipelineStalled"
# Grafana's variables, given the values Grafana would use over a recent window.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "10m", "$__interval": "15s"}


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expr) of every target of the shipped dashboard, variables filled in."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            queries.append((panel["title"], expr))
    return queries


def alert_rules() -> list[dict[str, Any]]:
    groups = load_yaml(ALERT_RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def has_value(result: list[dict[str, Any]]) -> bool:
    return any(not math.isnan(float(series["value"][1])) for series in result)


@pytest.fixture(scope="module")
def private_stack(
    postgres_dsn: str,
    smtp_server: tuple[int, MailCatcher],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServices]:
    """ingest, safety_rules and notifier on their own broker and database."""
    dsn = asyncio.run(create_database(postgres_dsn, "obs"))
    log_dir = tmp_path_factory.mktemp("observability-logs")
    with components.tansu() as broker:
        env = service_env(
            database_url=as_service_role(dsn),
            kafka_bootstrap=broker.bootstrap,
            smtp_port=smtp_server[0],
            VIGIL_AUDIT_ANCHOR_FILE=str(log_dir / "anchors.jsonl"),
        )
        with running_services(env, log_dir, admin_dsn=dsn) as running:
            yield running
    asyncio.run(drop_database(postgres_dsn, dsn))


def hostport(url: str) -> str:
    return urlsplit(url).netloc


@pytest.fixture(scope="module")
def prometheus(
    private_stack: RunningServices, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningPrometheus]:
    folder = tmp_path_factory.mktemp("prometheus")
    # The shipped stall alert waits for 120 s of no progress, held for 2 minutes; this copy
    # waits 5 s, held 3 s, so the test takes seconds. Every other rule is as shipped.
    rules = rules_for_test(load_yaml(ALERT_RULES.read_text()), {STALLED: ("5", "3s")})
    rule_file = folder / "alerts.yml"
    rule_file.write_text(yaml.safe_dump(rules, sort_keys=False))
    targets = {
        "vigil-ingest": hostport(private_stack.ingest_url),
        "vigil-safety-rules": hostport(private_stack.rules_url),
        "vigil-notifier": hostport(private_stack.notifier_url),
    }
    # Prometheus reads the token from a file, as the compose stack's secret
    token_file = folder / "metrics_token"
    token_file.write_text(METRICS_TOKEN + "\n")
    config = config_for_test(targets, rule_file, token_file=token_file)
    with running_prometheus(config, folder) as running:
        yield running


@pytest.fixture
async def client(private_stack: RunningServices) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=private_stack.ingest_url, headers=private_stack.headers, timeout=30
    ) as client:
        yield client


async def scraped(
    prometheus: RunningPrometheus, selector: str, *, times: int, series: int = 1
) -> bool:
    """Whether at least ``series`` series of ``selector`` have ``times`` samples in the
    last minute."""
    result = prometheus.query(f"count_over_time({selector}[1m]) >= {times}")
    return len(result) >= series


def stall_alert_state(prometheus: RunningPrometheus) -> str:
    alerts = prometheus.get("/api/v1/alerts")["alerts"]
    states = {a["state"] for a in alerts if a["labels"].get("alertname") == STALLED}
    return "firing" if "firing" in states else (states.pop() if states else "inactive")


def test_shipped_configuration_and_rules_pass_promtool(tmp_path: Path) -> None:
    # promtool checks that the token file exists: the shipped file, with the compose
    # secret's path pointed at a file of the test's, beside a copy of the rules
    token_file = tmp_path / "metrics_token"
    token_file.write_text(METRICS_TOKEN)
    shipped = SCRAPE_CONFIG.read_text()
    assert shipped.count("credentials_file: /run/secrets/metrics_token") == 3
    config = tmp_path / SCRAPE_CONFIG.name
    config.write_text(shipped.replace("/run/secrets/metrics_token", str(token_file)))
    shutil.copy(ALERT_RULES, tmp_path / ALERT_RULES.name)
    for args in (["check", "config", str(config)], ["check", "rules", str(ALERT_RULES)]):
        checked = subprocess.run([str(promtool()), *args], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_every_dashboard_query_and_alert_returns_data_after_traffic(
    prometheus: RunningPrometheus, client: httpx.AsyncClient, mailbox: MailCatcher
) -> None:
    async def all_targets_up() -> bool:
        targets = prometheus.get("/api/v1/targets")["activeTargets"]
        return len(targets) == 3 and all(t["health"] == "up" for t in targets)

    await eventually(all_targets_up, timeout=30, what="Prometheus scraping all three services")
    # rates need samples from before the traffic: a counter's first sample holds no increase
    await eventually(
        lambda: scraped(prometheus, "up", times=3, series=3), what="three scrapes of each service"
    )

    subject = new_subject_id()
    response = await client.post("/v1/subjects", json=enrolment(subject, "PKUPH-02"))
    assert response.status_code == 202, response.text
    response = await client.post("/v1/lab-results", json=haemoglobin(subject, "8.2"))
    assert response.status_code == 202, response.text
    invalid = await client.post("/v1/lab-results", json={"subject_id": subject})
    assert invalid.status_code == 422
    mailbox.wait_for(about(subject), count=len(investigators_of("PKUPH-02")), timeout=60)

    async def delivery_scraped() -> bool:
        return has_value(prometheus.query('vigil_deliveries_total{outcome="sent"} > 0'))

    await eventually(delivery_scraped, timeout=30, what="the delivery scraped by Prometheus")
    # and samples after it, so every series born with the traffic has a rate
    published = 'faststream_published_messages_total{destination="vigil.safety-signals.v1"}'
    await eventually(
        lambda: scraped(prometheus, published, times=3), what="scrapes after the traffic"
    )

    empty = []
    for title, expr in dashboard_queries():
        if not has_value(prometheus.query(expr)):
            empty.append(f"{title}: {expr}")
    for rule in alert_rules():
        prometheus.query(rule["expr"])  # parses and evaluates
        measure = Threshold.of(rule["expr"]).measure
        if not has_value(prometheus.query(measure)):
            empty.append(f"alert {rule['alert']}: {measure}")
    assert not empty, "queries without data:\n" + "\n".join(empty)


async def test_stopping_the_rules_service_fires_the_stall_alert(
    prometheus: RunningPrometheus, private_stack: RunningServices, client: httpx.AsyncClient
) -> None:
    assert stall_alert_state(prometheus) == "inactive"
    subject = new_subject_id()
    await client.post("/v1/subjects", json=enrolment(subject, "PKUPH-01"))

    private_stack.stop("safety_rules")

    async def firing() -> bool:
        # ingest keeps receiving while nothing reaches the audit log
        response = await client.post("/v1/lab-results", json=haemoglobin(subject, "13.1"))
        assert response.status_code == 202, response.text
        return stall_alert_state(prometheus) == "firing"

    await eventually(firing, timeout=60, what=f"{STALLED} firing")


def test_dashboard_variables_are_all_known() -> None:
    unknown = {
        variable for _, expr in dashboard_queries() for variable in re.findall(r"\$\w+", expr)
    }
    assert not unknown, f"give these Grafana variables a test value: {unknown}"
