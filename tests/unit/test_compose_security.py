"""docker-compose.yml ships no working secret and no needlessly open port (issue 12, item 8),
and its Kafka authenticates every client and authorises it through ACLs (item 4).

No Docker engine runs here: these read the file as compose would, without starting it."""

from __future__ import annotations

import re
from typing import Any

import pytest

from shared.events.topics import ALL_TOPICS
from shared.yaml_files import load_yaml
from tests.support.services import REPO

COMPOSE_TEXT = (REPO / "docker-compose.yml").read_text()
COMPOSE: dict[str, Any] = load_yaml(COMPOSE_TEXT)
SERVICES: dict[str, Any] = COMPOSE["services"]
VIGIL = ("ingest", "safety-rules", "notifier")
KAFKA_START = (REPO / "deploy" / "kafka" / "start.sh").read_text()
DEPLOYMENT_DOC = (REPO / "docs" / "deployment.md").read_text()

SECRET_LIKE = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|_KEY$", re.I)
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z0-9_]+)(?P<form>:?[-?+]?)")


# what compose interpolates: the file without its comment lines
CONTENT = "\n".join(line for line in COMPOSE_TEXT.splitlines() if not line.lstrip().startswith("#"))


def interpolations() -> list[tuple[str, str]]:
    return [(m["name"], m["form"]) for m in INTERPOLATION.finditer(CONTENT)]


def environment(service: str) -> dict[str, Any]:
    env: dict[str, Any] = SERVICES[service].get("environment", {})
    return env


def test_no_secret_like_variable_has_a_default() -> None:
    defaulted = {name for name, form in interpolations() if "-" in form}
    assert {name for name in defaulted if SECRET_LIKE.search(name)} == set()


def test_every_secret_like_variable_stops_compose_when_unset() -> None:
    secret = [(name, form) for name, form in interpolations() if SECRET_LIKE.search(name)]
    assert len(secret) >= 8
    assert [name for name, form in secret if form != ":?"] == []
    # and each says what it is for
    for match in re.finditer(r"\$\{([A-Z0-9_]+):\?([^}]*)\}", CONTENT):
        assert len(match[2].strip()) > 20, f"{match[1]}: the error message explains nothing"


def test_no_literal_password_or_key_in_any_service_environment() -> None:
    for name, service in SERVICES.items():
        for key, value in (service.get("environment") or {}).items():
            text = "" if value is None else str(value)
            assert not re.search(r"://[^/@\s:]+:[^@/\s]+@", text), (
                f"{name}.{key}: password in a URL"
            )
            holds_key_material = "SSL" in key or SECRET_LIKE.search(key.removesuffix("_FILE"))
            if key.endswith(("_FILE", "_LOCATION")) and holds_key_material:
                assert text.startswith("/run/secrets/"), f"{name}.{key}: {text}"
            elif SECRET_LIKE.search(key):
                assert value is None or re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]+\}", text), (
                    f"{name}.{key} is a literal: {text!r}"
                )


def test_the_link_signing_keys_come_from_a_secret_file_with_no_fallback() -> None:
    notifier = environment("notifier")
    assert notifier["VIGIL_NOTIFIER_LINK_KEYS_FILE"] == "/run/secrets/notifier_link_keys"
    assert "VIGIL_NOTIFIER_LINK_KEYS" not in notifier
    assert "notifier_link_keys" in COMPOSE["services"]["notifier"]["secrets"]
    # the webhook key passes through when set, and is never an empty default
    assert notifier["VIGIL_NOTIFIER_WEBHOOK_SECRET"] is None


def test_secret_files_come_from_the_operators_folder_without_fallback() -> None:
    for name, secret in COMPOSE["secrets"].items():
        assert secret["file"].startswith("${VIGIL_SECRETS_DIR:?"), name


def test_grafana_has_no_anonymous_access_and_a_required_admin_password() -> None:
    grafana = environment("grafana")
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert "GF_AUTH_ANONYMOUS_ORG_ROLE" not in grafana
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"].startswith("${VIGIL_GRAFANA_ADMIN_PASSWORD:?")


@pytest.mark.parametrize("service", ["mailpit", "prometheus", "grafana"])
def test_operator_tools_publish_on_loopback_only(service: str) -> None:
    ports = SERVICES[service]["ports"]
    assert ports
    assert all(str(port).startswith("127.0.0.1:") for port in ports), ports


@pytest.mark.parametrize("service", VIGIL)
def test_vigil_services_run_with_production_settings_and_authenticated_kafka(
    service: str,
) -> None:
    env = environment(service)
    assert env["VIGIL_ENVIRONMENT"] == "production"
    assert env["VIGIL_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["VIGIL_KAFKA_SASL_MECHANISM"].startswith("SCRAM-")
    assert env["VIGIL_KAFKA_SSL_CA_FILE"] == "/run/secrets/kafka_ca"
    assert env["VIGIL_KAFKA_SASL_PASSWORD"].startswith("${VIGIL_KAFKA_")
    assert env["VIGIL_METRICS_TOKEN_FILE"] == "/run/secrets/metrics_token"
    assert {"metrics_token", "kafka_ca"} <= set(SERVICES[service]["secrets"])
    assert "@postgres" in env["VIGIL_DATABASE_URL"]
    assert env["VIGIL_DATABASE_URL"].startswith("postgresql://vigil_app@")


def test_each_service_is_its_own_kafka_principal() -> None:
    users = [environment(service)["VIGIL_KAFKA_SASL_USERNAME"] for service in VIGIL]
    assert users == ["vigil-ingest", "vigil-safety-rules", "vigil-notifier"]
    for user in users:  # the broker's provisioning makes exactly these SCRAM users
        assert f"scram_user {user} " in KAFKA_START
    passwords = {environment(service)["VIGIL_KAFKA_SASL_PASSWORD"] for service in VIGIL}
    assert len(passwords) == 3


def test_migrations_run_as_the_administrator_not_the_service_role() -> None:
    migrate = environment("migrate")
    assert migrate["VIGIL_DATABASE_ADMIN_URL"] == "postgresql://vigil@postgres:5432/vigil"
    assert migrate["PGPASSWORD"].startswith("${VIGIL_POSTGRES_PASSWORD:?")


def test_kafka_authorises_every_request_through_acls() -> None:
    kafka = environment("kafka")
    assert kafka["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")
    assert kafka["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert kafka["KAFKA_SUPER_USERS"] == "User:ANONYMOUS"
    listeners = dict(part.split("://") for part in kafka["KAFKA_LISTENERS"].split(","))
    protocols = dict(
        part.split(":") for part in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    # the anonymous (super user) listeners answer only inside the container
    for name, protocol in protocols.items():
        if protocol == "PLAINTEXT":
            assert listeners[name].startswith("127.0.0.1:"), name
        else:
            assert protocol == "SASL_SSL", name
    assert kafka["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    # only the partners' SASL_SSL listener is published
    assert SERVICES["kafka"]["ports"] == ["9094:9094"]
    assert listeners["PARTNER"] == ":9094"


def kafka_grants() -> dict[str, list[tuple[str, str]]]:
    """principal -> [(operations, topics)] from start.sh's ``allow`` lines, each with the
    topic list ``mapfile`` put in ``args`` before it."""
    grants: dict[str, list[tuple[str, str]]] = {}
    topics = ""
    for line in KAFKA_START.splitlines():
        line = line.strip()
        if line.startswith("mapfile -t args"):
            topics = line.split("topics ", 1)[1].rstrip(")")
        elif line.startswith("allow ") and "()" not in line:
            principal = line.split()[1].strip('"')
            operations = " ".join(re.findall(r"--operation (\w+)", line))
            where = topics if '"${args[@]}"' in line else line.split("--topic ", 1)[1]
            grants.setdefault(principal, []).append((operations, where))
    return grants


def test_kafka_provisioning_grants_each_principal_only_its_topics() -> None:
    for topic in ALL_TOPICS:
        assert topic in KAFKA_START, topic
    grants = kafka_grants()
    assert grants["$VIGIL_KAFKA_PARTNER_USERNAME"] == [("Write Describe", '"${INPUTS[@]}"')]
    assert "INPUTS=(vigil.subjects.v1 vigil.lab-results.v1 vigil.adverse-events.v1 " in KAFKA_START
    reads = {p: [t for ops, t in g if ops == "Read"] for p, g in grants.items()}
    assert reads["vigil-notifier"] == ['"$SIGNALS" "$DATA_QUALITY"']
    assert reads["vigil-ingest"] == []
    writes = {p: [t for ops, t in g if ops == "Write"] for p, g in grants.items()}
    assert writes["vigil-notifier"] == []
    assert writes["vigil-ingest"] == ['"${INPUTS[@]}" "$DATA_QUALITY" "$DEAD_LETTERS"']
    assert writes["vigil-safety-rules"] == ['"$SIGNALS" "$DATA_QUALITY" "$DEAD_LETTERS"']
    # the consumer groups the services join
    from services.notifier.main import GROUP_ID as NOTIFIER_GROUP
    from services.safety_rules.main import GROUP_ID as RULES_GROUP

    assert f"--group {RULES_GROUP}" in KAFKA_START
    assert f"--group {NOTIFIER_GROUP}" in KAFKA_START


def test_prometheus_scrapes_with_the_mounted_token() -> None:
    scrape = load_yaml((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    for job in scrape["scrape_configs"]:
        assert job["authorization"]["credentials_file"] == "/run/secrets/metrics_token"
    assert SERVICES["prometheus"]["secrets"] == ["metrics_token"]


def test_every_variable_the_operator_must_set_is_documented() -> None:
    required = {name for name, form in interpolations() if form == ":?"}
    assert required
    missing = sorted(name for name in required if f"`{name}`" not in DEPLOYMENT_DOC)
    assert missing == []
