"""docker-compose.yml against the Compose specification's JSON schema (no engine needed)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from shared.yaml_files import load_yaml
from tests.support.services import REPO

SCHEMA = json.loads((REPO / "tests/data/compose-spec/compose-spec.json").read_text())
COMPOSE = load_yaml((REPO / "docker-compose.yml").read_text())


def test_compose_file_follows_the_specification() -> None:
    validator = jsonschema.Draft201909Validator(SCHEMA)
    errors = sorted(validator.iter_errors(COMPOSE), key=lambda e: list(e.path))
    assert [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors] == []


def test_the_validator_catches_a_broken_file() -> None:
    broken = {"services": {"ingest": {"image": "vigil", "ports": "8080:8080", "bogus": 1}}}
    validator = jsonschema.Draft201909Validator(SCHEMA)
    assert len(list(validator.iter_errors(broken))) >= 2


@pytest.mark.parametrize(
    "service", ["kafka", "postgres", "mailpit", "prometheus", "grafana", "ingest", "notifier"]
)
def test_the_stack_has_each_component(service: str) -> None:
    assert service in COMPOSE["services"]


def test_services_are_built_from_one_dockerfile_and_share_settings() -> None:
    vigil = [COMPOSE["services"][name] for name in ("ingest", "safety-rules", "notifier")]
    assert {service["build"] for service in vigil} == {"."}
    assert [service["command"] for service in vigil] == [["ingest"], ["rules"], ["notifier"]]
    for service in vigil:
        assert service["environment"]["VIGIL_KAFKA_BOOTSTRAP"] == "kafka:9092"
    kafka = COMPOSE["services"]["kafka"]["environment"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper


def test_ingest_listens_for_mllp_over_tls_from_secrets_with_no_plain_fallback() -> None:
    ingest = COMPOSE["services"]["ingest"]
    env = ingest["environment"]
    assert env["VIGIL_MLLP_TLS_CERT_FILE"] == "/run/secrets/mllp_tls_cert"
    assert env["VIGIL_MLLP_TLS_KEY_FILE"] == "/run/secrets/mllp_tls_key"
    assert "VIGIL_MLLP_ALLOW_PLAIN" not in env
    assert {"mllp_tls_cert", "mllp_tls_key"} <= set(ingest["secrets"])
    for secret in ingest["secrets"]:
        assert ":?" in COMPOSE["secrets"][secret]["file"]  # no default: compose refuses
