"""TLS and SASL settings reach every Kafka client Vigil makes (shared/kafka_security.py).

tests/integration/test_kafka_tls.py proves TLS against a real broker; SASL is proven here
only as far as the options handed to aiokafka (the development broker cannot be given
SCRAM users while it requires authentication)."""

from __future__ import annotations

import ast
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from pydantic import ValidationError

from services.settings import VigilSettings
from shared.kafka import make_broker
from shared.kafka_security import (
    bootstrap_hosts,
    check_kafka_transport,
    kafka_client_options,
    kafka_security,
)
from shared.settings import InsecureConfiguration
from tests.support.services import REPO


def settings(**values: Any) -> VigilSettings:
    return VigilSettings(**values)


def test_plaintext_to_a_broker_on_loopback_is_allowed_in_production() -> None:
    local = settings(kafka_bootstrap="127.0.0.1:9092,localhost:9093,[::1]:9094")
    assert kafka_client_options(local) == {
        "bootstrap_servers": "127.0.0.1:9092,localhost:9093,[::1]:9094",
        "security_protocol": "PLAINTEXT",
    }


def test_plaintext_to_a_remote_broker_is_refused_in_production_naming_the_setting() -> None:
    remote = settings(kafka_bootstrap="kafka:9092")
    with pytest.raises(InsecureConfiguration, match="VIGIL_KAFKA_SECURITY_PROTOCOL=PLAINTEXT"):
        kafka_client_options(remote)
    with pytest.raises(InsecureConfiguration, match="VIGIL_KAFKA_SECURITY_PROTOCOL=PLAINTEXT"):
        make_broker(remote, client_id="vigil-test")


@pytest.mark.parametrize(
    "relaxed",
    [{"environment": "development"}, {"kafka_allow_plaintext": True}],
)
def test_plaintext_to_a_remote_broker_needs_development_or_an_explicit_allowance(
    relaxed: dict[str, Any],
) -> None:
    check_kafka_transport(settings(kafka_bootstrap="kafka:9092", **relaxed))


def test_sasl_plain_without_tls_to_a_remote_broker_is_refused_but_scram_is_not() -> None:
    common = {
        "kafka_bootstrap": "kafka:9092",
        "kafka_security_protocol": "SASL_PLAINTEXT",
        "kafka_sasl_username": "ingest",
        "kafka_sasl_password": "p4ss-word",
    }
    with pytest.raises(InsecureConfiguration, match="VIGIL_KAFKA_SASL_MECHANISM=PLAIN"):
        check_kafka_transport(settings(kafka_sasl_mechanism="PLAIN", **common))
    check_kafka_transport(settings(kafka_sasl_mechanism="SCRAM-SHA-512", **common))


@pytest.mark.parametrize(
    ("mechanism", "security_class"),
    [("PLAIN", SASLPlaintext), ("SCRAM-SHA-256", SASLScram256), ("SCRAM-SHA-512", SASLScram512)],
)
def test_each_sasl_mechanism_becomes_faststreams_security_and_aiokafkas_options(
    mechanism: str, security_class: type[BaseSecurity], tmp_path: Path
) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    configured = settings(
        kafka_bootstrap="kafka.example.org:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="safety-rules",
        kafka_sasl_password="s3cret-pass",
        kafka_ssl_ca_file=tmp_path / "ca.pem",
    )
    security = kafka_security(configured)
    assert type(security) is security_class
    options = kafka_client_options(configured)
    context = options.pop("ssl_context")
    assert options == {
        "bootstrap_servers": "kafka.example.org:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "safety-rules",
        "sasl_plain_password": "s3cret-pass",
    }
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True


def test_the_faststream_broker_gets_the_same_security_as_raw_clients(tmp_path: Path) -> None:
    configured = settings(
        kafka_bootstrap="kafka:9092",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_username="notifier",
        kafka_sasl_password="s3cret-pass",
    )
    broker = make_broker(configured, client_id="vigil-notifier")
    connection = broker.config.broker_config.builder.keywords
    for key, value in kafka_client_options(configured).items():
        if key != "bootstrap_servers":
            assert connection[key] == value, key


def test_tls_with_a_client_certificate_loads_the_certificate_and_key(tmp_path: Path) -> None:
    ca = trustme.CA()
    client = ca.issue_cert("vigil-ingest")
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    client.cert_chain_pems[0].write_to_path(tmp_path / "client.pem")
    client.private_key_pem.write_to_path(tmp_path / "client.key")
    configured = settings(
        kafka_bootstrap="kafka:9093",
        kafka_security_protocol="SSL",
        kafka_ssl_ca_file=tmp_path / "ca.pem",
        kafka_ssl_cert_file=tmp_path / "client.pem",
        kafka_ssl_key_file=tmp_path / "client.key",
    )
    options = kafka_client_options(configured)
    assert options["security_protocol"] == "SSL"
    assert isinstance(options["ssl_context"], ssl.SSLContext)


def test_a_missing_ca_file_is_named_in_the_error(tmp_path: Path) -> None:
    configured = settings(
        kafka_bootstrap="kafka:9093",
        kafka_security_protocol="SSL",
        kafka_ssl_ca_file=tmp_path / "missing-ca.pem",
    )
    with pytest.raises(InsecureConfiguration, match=r"VIGIL_KAFKA_SSL_CA_FILE=.*missing-ca\.pem"):
        kafka_security(configured)


def test_a_key_that_does_not_match_the_certificate_is_named_in_the_error(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.issue_cert("a").cert_chain_pems[0].write_to_path(tmp_path / "client.pem")
    ca.issue_cert("b").private_key_pem.write_to_path(tmp_path / "client.key")
    configured = settings(
        kafka_bootstrap="kafka:9093",
        kafka_security_protocol="SSL",
        kafka_ssl_cert_file=tmp_path / "client.pem",
        kafka_ssl_key_file=tmp_path / "client.key",
    )
    with pytest.raises(InsecureConfiguration, match="VIGIL_KAFKA_SSL_CERT_FILE"):
        kafka_security(configured)


def test_sasl_without_a_user_name_or_password_is_refused_naming_both() -> None:
    with pytest.raises(ValidationError, match="VIGIL_KAFKA_SASL_USERNAME and"):
        settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="ingest")


def test_a_client_certificate_without_its_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="VIGIL_KAFKA_SSL_CERT_FILE and"):
        settings(kafka_ssl_cert_file=tmp_path / "client.pem")


@pytest.mark.parametrize(
    ("bootstrap", "hosts"),
    [
        ("kafka:9092", ["kafka"]),
        ("a:1, b:2", ["a", "b"]),
        ("[::1]:9092", ["::1"]),
        ("localhost", ["localhost"]),
    ],
)
def test_bootstrap_hosts_are_read_from_the_server_list(bootstrap: str, hosts: list[str]) -> None:
    assert bootstrap_hosts(bootstrap) == hosts


KAFKA_CLIENTS = {"AIOKafkaAdminClient", "AIOKafkaProducer", "AIOKafkaConsumer", "KafkaBroker"}


def kafka_client_calls(path: Path) -> list[ast.Call]:
    calls = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name in KAFKA_CLIENTS:
                calls.append(node)
    return calls


def test_every_kafka_client_vigil_makes_takes_the_security_settings() -> None:
    """A new client that forgets TLS and SASL fails here rather than in production."""
    sources = [
        path
        for folder in ("shared", "services", "vigil", "benchmarks")
        for path in (REPO / folder).rglob("*.py")
    ]
    found = 0
    for path in sources:
        for call in kafka_client_calls(path):
            found += 1
            unpacked = [k.value for k in call.keywords if k.arg is None]
            secured = any(k.arg == "security" for k in call.keywords) or any(
                isinstance(v, ast.Call) and getattr(v.func, "id", "") == "kafka_client_options"
                for v in unpacked
            )
            assert secured, f"{path.relative_to(REPO)}:{call.lineno} builds a Kafka client "
            "without kafka_security() / **kafka_client_options()"
    assert found >= 2
