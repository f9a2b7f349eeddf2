"""A real Prometheus (Debian's package) run by the tests on loopback, with the shipped
scrape configuration and alert rules pointed at services started by the test."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from shared.yaml_files import load_yaml
from tests.support.services import REPO
from vigil.devstack.ports import free_port
from vigil.devstack.supervisor import ManagedProcess, http_ready

DEPLOY = REPO / "deploy" / "prometheus"
SCRAPE_CONFIG = DEPLOY / "prometheus.yml"
ALERT_RULES = DEPLOY / "alerts.yml"

# `<measure> <comparison> <number>`: the form every shipped alert expression has.
_THRESHOLD = re.compile(
    r"^(?P<measure>.*\S)\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<value>[-0-9.e+]+)\s*$", re.S
)


@dataclass(frozen=True)
class Threshold:
    """An alert expression split into what it measures and the limit it compares with."""

    measure: str
    op: str
    value: str

    @classmethod
    def of(cls, expr: str) -> Threshold:
        match = _THRESHOLD.match(expr.strip())
        if match is None:
            raise ValueError(f"alert expression is not `<measure> <op> <number>`: {expr!r}")
        return cls(match["measure"], match["op"], match["value"])


def prometheus_binary() -> Path:
    """``prometheus`` from PATH, installing Debian's package (as root) when it is missing."""
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if found:
        return Path(found)
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError(
            "Prometheus is not installed and cannot be installed here (needs root and apt-get): "
            "sudo apt-get install --no-install-recommends prometheus"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # another test run may hold the dpkg lock: wait for it instead of failing
    lock = ["-o", "DPkg::Lock::Timeout=300"]
    # policy-rc.d keeps the package from starting its own Prometheus on port 9090
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = not policy.exists()
    if made_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        subprocess.run(
            ["apt-get", *lock, "update", "-qq"], env=env, check=True, capture_output=True
        )
        subprocess.run(
            ["apt-get", *lock, "install", "-y", "-qq", "--no-install-recommends", "prometheus"],
            env=env,
            check=True,
            capture_output=True,
        )
    finally:
        if made_policy:
            policy.unlink(missing_ok=True)
    found = shutil.which("prometheus")
    if not found:
        raise RuntimeError("apt-get installed prometheus, but no prometheus binary is on PATH")
    return Path(found)


def promtool() -> Path:
    """``promtool``, which Debian's prometheus package installs next to the server."""
    found = shutil.which("promtool") or str(prometheus_binary().parent / "promtool")
    return Path(found)


def rules_for_test(
    rules: Mapping[str, Any], overrides: Mapping[str, tuple[str, str]]
) -> dict[str, Any]:
    """The shipped rules with some alerts' threshold and ``for`` replaced (name -> (value,
    for)), so a test need not wait minutes; everything else is as shipped."""
    copy: dict[str, Any] = load_yaml(yaml.safe_dump(dict(rules)))
    for group in copy["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") in overrides:
                value, hold = overrides[rule["alert"]]
                threshold = Threshold.of(rule["expr"])
                rule["expr"] = f"{threshold.measure} {threshold.op} {value}"
                rule["for"] = hold
    return copy


def config_for_test(
    targets: Mapping[str, str], rule_file: Path, *, token_file: Path, interval: str = "1s"
) -> dict[str, Any]:
    """The shipped scrape configuration with each job's targets replaced (job -> host:port),
    its bearer token read from ``token_file``, the given rule file, and short scrape and
    evaluation intervals."""
    config: dict[str, Any] = load_yaml(SCRAPE_CONFIG.read_text())
    config["global"] = {
        **config.get("global", {}),
        "scrape_interval": interval,
        "evaluation_interval": interval,
    }
    config["rule_files"] = [str(rule_file)]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    missing = set(jobs) ^ set(targets)
    if missing:
        raise ValueError(f"scrape jobs and test targets differ: {sorted(missing)}")
    for name, job in jobs.items():
        job["authorization"]["credentials_file"] = str(token_file)
        for static in job["static_configs"]:
            static["targets"] = [targets[name]]
    return config


@dataclass(frozen=True)
class RunningPrometheus:
    url: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector; raises with Prometheus's error when it fails."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"query failed: {expr}\n{body.get('error')}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.url}{path}", timeout=10)
        response.raise_for_status()
        return response.json()["data"]


@contextmanager
def running_prometheus(config: Mapping[str, Any], folder: Path) -> Iterator[RunningPrometheus]:
    """Prometheus on a free loopback port with ``config``; stopped afterwards."""
    binary = prometheus_binary()
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = ManagedProcess(
        "prometheus",
        [
            str(binary),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        log_file=folder / "prometheus.log",
        ready=http_ready(f"{url}/-/ready"),
        ready_timeout=60,
    )
    process.start()
    try:
        yield RunningPrometheus(url)
    finally:
        process.stop()
