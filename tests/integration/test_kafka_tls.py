"""Vigil's Kafka clients over TLS, against a real TLS endpoint in front of the development
broker (tests/support/tls_proxy.py says why a proxy): the broker's certificate and name are
checked, a client certificate is presented when configured, and a service runs whole over
it. SASL is not proven here: Tansu 0.6.0 cannot be given a SCRAM user while it requires
authentication (tests/unit/test_kafka_security.py checks the options instead)."""

from __future__ import annotations

import asyncio
import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError

from services.settings import VigilSettings
from shared.events.topics import DEAD_LETTERS
from shared.kafka import ensure_topics, make_broker, wait_for_topics
from shared.kafka_security import kafka_client_options
from tests.support.components import as_service_role, create_database, drop_database, scratch_dir
from tests.support.mail import MailCatcher
from tests.support.services import METRICS_TOKEN, service_env, start_service
from tests.support.tls_proxy import tls_proxy
from vigil.devstack.ports import free_port
from vigil.devstack.tansu import TansuBroker

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ca.pem, and client.pem / client.key: a client certificate from the same CA."""
    folder = tmp_path_factory.mktemp("kafka-tls")
    ca.cert_pem.write_to_path(folder / "ca.pem")
    client = ca.issue_cert("vigil-ingest")
    client.cert_chain_pems[0].write_to_path(folder / "client.pem")
    client.private_key_pem.write_to_path(folder / "client.key")
    return folder


def server_context(
    ca: trustme.CA, *names: str, client_certificates: bool = False
) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    if client_certificates:
        ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def tls_broker(context: ssl.SSLContext) -> Iterator[str]:
    """A Tansu broker reached only through TLS; yields the bootstrap address."""
    folder = scratch_dir("vigil-test-tansu-tls-")
    proxy_port, broker_port = free_port(), free_port()
    broker = TansuBroker(broker_port, log_file=folder / "log", advertised_port=proxy_port)
    broker.start()
    try:
        with tls_proxy(broker_port, context, port=proxy_port):
            yield f"127.0.0.1:{proxy_port}"
    finally:
        broker.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def verified_broker(ca: trustme.CA) -> Iterator[str]:
    yield from tls_broker(server_context(ca, "127.0.0.1"))


@pytest.fixture(scope="module")
def misnamed_broker(ca: trustme.CA) -> Iterator[str]:
    yield from tls_broker(server_context(ca, "kafka.example.org"))


@pytest.fixture(scope="module")
def mutual_broker(ca: trustme.CA) -> Iterator[str]:
    yield from tls_broker(server_context(ca, "127.0.0.1", client_certificates=True))


def tls_settings(bootstrap: str, files: Path, **more: Any) -> VigilSettings:
    return VigilSettings(
        kafka_bootstrap=bootstrap,
        kafka_security_protocol="SSL",
        kafka_ssl_ca_file=files / "ca.pem",
        kafka_partitions=1,
        **more,
    )


async def published_and_read_back(settings: VigilSettings) -> bytes:
    """Create the topics (admin client), publish (FastStream), read (raw consumer)."""
    await ensure_topics(settings)
    broker = make_broker(settings, client_id="vigil-tls-test")
    await broker.connect()
    try:
        await broker.publish(b"over-tls", topic=DEAD_LETTERS, key=b"k")
    finally:
        await broker.stop()
    consumer = AIOKafkaConsumer(
        DEAD_LETTERS,
        **kafka_client_options(settings),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=30)
    finally:
        await consumer.stop()
    value: bytes = record.value
    return value


async def test_every_client_works_over_tls_with_the_brokers_certificate_verified(
    verified_broker: str, files: Path
) -> None:
    assert await published_and_read_back(tls_settings(verified_broker, files)) == b"over-tls"


async def test_a_broker_certificate_for_another_name_is_refused(
    misnamed_broker: str, files: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
        await ensure_topics(tls_settings(misnamed_broker, files))
    assert "certificate verify failed" in caplog.text
    assert "127.0.0.1" in caplog.text


async def test_a_broker_signed_by_another_ca_is_refused(
    verified_broker: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    trustme.CA().cert_pem.write_to_path(tmp_path / "ca.pem")
    with pytest.raises(RuntimeError, match="not reachable"):
        await wait_for_topics(tls_settings(verified_broker, tmp_path), timeout=2)
    assert "certificate verify failed" in caplog.text


async def test_a_broker_requiring_client_certificates_accepts_vigils_and_refuses_none(
    mutual_broker: str, files: Path
) -> None:
    with_certificate = tls_settings(
        mutual_broker,
        files,
        kafka_ssl_cert_file=files / "client.pem",
        kafka_ssl_key_file=files / "client.key",
    )
    assert await published_and_read_back(with_certificate) == b"over-tls"
    with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
        await ensure_topics(tls_settings(mutual_broker, files))


async def test_the_rules_service_runs_in_production_over_tls(
    verified_broker: str,
    files: Path,
    postgres_dsn: str,
    smtp_server: tuple[int, MailCatcher],
    tmp_path: Path,
) -> None:
    dsn = await create_database(postgres_dsn, "tls")
    port = free_port()
    env = service_env(
        database_url=as_service_role(dsn),
        kafka_bootstrap=verified_broker,
        smtp_port=smtp_server[0],
        VIGIL_ENVIRONMENT="production",
        VIGIL_KAFKA_SECURITY_PROTOCOL="SSL",
        VIGIL_KAFKA_SSL_CA_FILE=str(files / "ca.pem"),
        VIGIL_RULES_PORT=str(port),
        VIGIL_AUDIT_ANCHOR_FILE=str(tmp_path / "anchors.jsonl"),
    )
    try:
        # ready means: topics checked, consumer group joined, broker answering a ping
        process = await asyncio.to_thread(
            start_service, "safety_rules", "rules", port, env, tmp_path
        )
        try:
            async with httpx.AsyncClient() as client:
                ready = await client.get(f"http://127.0.0.1:{port}/readyz")
                assert ready.status_code == 200, ready.text
                metrics = await client.get(
                    f"http://127.0.0.1:{port}/metrics/",
                    headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
                )
                assert metrics.status_code == 200
                assert "vigil_consumer_lag_records" in metrics.text
        finally:
            await asyncio.to_thread(process.stop)
    finally:
        await drop_database(postgres_dsn, dsn)
