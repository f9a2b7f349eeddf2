"""OWASP API Security Top 10 (2023), API8 Security Misconfiguration: Vigil ships no secret
with a working default, keeps operator endpoints behind a credential, and a service given
insecure production settings refuses to start, naming the setting (issue 12, items 4, 7, 8).

Through real sockets against the session's services (production settings, with the test
metrics token), and the service processes themselves for the refusals. The compose
file's guarantees are collected from tests/unit/test_compose_security.py; the database
roles' in tests/integration/test_schema_ownership.py."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.components import SERVICE_PASSWORD
from tests.support.services import METRICS_TOKEN, REPO, RunningServices
from tests.unit.test_compose_security import (
    test_every_secret_like_variable_stops_compose_when_unset,
    test_grafana_has_no_anonymous_access_and_a_required_admin_password,
    test_no_literal_password_or_key_in_any_service_environment,
    test_no_secret_like_variable_has_a_default,
    test_operator_tools_publish_on_loopback_only,
    test_vigil_services_run_with_production_settings_and_authenticated_kafka,
)

pytestmark = pytest.mark.integration

__all__ = [  # collected here too: the compose file's part of API8
    "test_every_secret_like_variable_stops_compose_when_unset",
    "test_grafana_has_no_anonymous_access_and_a_required_admin_password",
    "test_no_literal_password_or_key_in_any_service_environment",
    "test_no_secret_like_variable_has_a_default",
    "test_operator_tools_publish_on_loopback_only",
    "test_vigil_services_run_with_production_settings_and_authenticated_kafka",
]

SERVICES = {"ingest": "ingest", "rules": "safety_rules", "notifier": "notifier"}


def urls(services: RunningServices) -> dict[str, str]:
    return {
        "ingest": services.ingest_url,
        "rules": services.rules_url,
        "notifier": services.notifier_url,
    }


@pytest.mark.parametrize("service", SERVICES)
async def test_metrics_without_the_bearer_token_is_401(
    services: RunningServices, service: str
) -> None:
    async with httpx.AsyncClient(base_url=urls(services)[service], timeout=10) as client:
        for headers in (
            {},
            {"Authorization": "Bearer wrong-token-0123456789"},
            {
                "Authorization": METRICS_TOKEN  # the token, but not as a bearer credential
            },
        ):
            refused = await client.get("/metrics", headers=headers)
            assert refused.status_code == 401, headers
            assert refused.headers["www-authenticate"].startswith("Bearer")
            assert "vigil_" not in refused.text
        allowed = await client.get(
            "/metrics/", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
        )
        assert allowed.status_code == 200
        assert "vigil_eventstore_append_seconds" in allowed.text


@pytest.mark.parametrize("service", SERVICES)
async def test_probes_stay_open_and_reveal_no_secret(
    services: RunningServices, service: str
) -> None:
    async with httpx.AsyncClient(base_url=urls(services)[service], timeout=10) as client:
        for path in ("/healthz", "/readyz"):
            probe = await client.get(path)
            assert probe.status_code == 200, probe.text
            for secret in (METRICS_TOKEN, SERVICE_PASSWORD, "postgresql://"):
                assert secret not in probe.text


def production_env(**overrides: str) -> dict[str, str]:
    """A service's settings in production, pointing nowhere (a refusal comes first)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "VIGIL_ENVIRONMENT": "production",
        "VIGIL_DATABASE_URL": "postgresql://vigil_app@127.0.0.1:1/vigil",
        "VIGIL_KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "VIGIL_STUDY_DIR": str(REPO / "studies"),
        "VIGIL_METRICS_TOKEN": METRICS_TOKEN,
        "VIGIL_NOTIFIER_LINK_KEYS": "t1:a-link-signing-key-for-this-test-only",
        "VIGIL_WORKSPACE_SECRET_KEY": "a-workspace-sealing-key-for-this-test-only",
    }
    env.update(overrides)
    return {name: value for name, value in env.items() if value}


async def refusal(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "vigil", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("command", SERVICES)
async def test_a_production_service_without_a_metrics_token_refuses_to_start(
    command: str,
) -> None:
    done = await refusal(command, production_env(VIGIL_METRICS_TOKEN=""))
    assert done.returncode == 2, done.stderr
    assert f"vigil {command}: refusing to start: VIGIL_METRICS_TOKEN" in done.stderr


async def test_a_guessable_metrics_token_is_refused() -> None:
    done = await refusal("rules", production_env(VIGIL_METRICS_TOKEN="short"))
    assert done.returncode == 2
    assert "VIGIL_METRICS_TOKEN is shorter than 16 characters" in done.stderr


@pytest.mark.parametrize("command", SERVICES)
async def test_a_production_service_refuses_plaintext_kafka_to_a_remote_broker(
    command: str,
) -> None:
    done = await refusal(command, production_env(VIGIL_KAFKA_BOOTSTRAP="kafka.invalid:9092"))
    assert done.returncode == 2, done.stderr
    assert "VIGIL_KAFKA_SECURITY_PROTOCOL=PLAINTEXT to kafka.invalid" in done.stderr


async def test_sasl_plain_without_tls_to_a_remote_broker_is_refused() -> None:
    done = await refusal(
        "rules",
        production_env(
            VIGIL_KAFKA_BOOTSTRAP="kafka.invalid:9092",
            VIGIL_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
            VIGIL_KAFKA_SASL_MECHANISM="PLAIN",
            VIGIL_KAFKA_SASL_USERNAME="vigil-safety-rules",
            VIGIL_KAFKA_SASL_PASSWORD="a-password-of-the-test",
        ),
    )
    assert done.returncode == 2
    assert "password in the clear" in done.stderr
    assert "a-password-of-the-test" not in done.stderr


async def test_a_secret_given_both_inline_and_as_a_file_stops_the_service(
    tmp_path: Path,
) -> None:
    token_file = tmp_path / "metrics-token"
    token_file.write_text(METRICS_TOKEN)
    done = await refusal("rules", production_env(VIGIL_METRICS_TOKEN_FILE=str(token_file)))
    assert done.returncode == 2
    assert "both VIGIL_METRICS_TOKEN and VIGIL_METRICS_TOKEN_FILE are set" in done.stderr
    assert METRICS_TOKEN not in done.stderr


async def test_an_unreadable_secret_file_stops_the_service_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-token"
    done = await refusal(
        "notifier", production_env(VIGIL_METRICS_TOKEN="", VIGIL_METRICS_TOKEN_FILE=str(missing))
    )
    assert done.returncode == 2
    assert f"VIGIL_METRICS_TOKEN_FILE={missing}: cannot read the secret file" in done.stderr
