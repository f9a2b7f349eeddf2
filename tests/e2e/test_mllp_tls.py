"""MLLP over TLS with client certificates mapped to sources, against a real ingest process
in production settings (no plain MLLP), with a test CA made here by trustme."""

from __future__ import annotations

import hashlib
import ssl
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import asyncpg
import pytest
import trustme

from tests.support.mail import MailCatcher
from tests.support.mllp import Ingest, MllpClient, ack_code, err_location, oru, running_ingest
from tests.support.studies import Sources, copy_studies
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Pki:
    ca: trustme.CA
    lab_a: trustme.LeafCert
    lab_b: trustme.LeafCert
    stranger: trustme.LeafCert

    def client(self, certificate: trustme.LeafCert | None) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        if certificate is not None:
            certificate.configure_cert(context)
        return context


def fingerprint(certificate: trustme.LeafCert) -> str:
    der = ssl.PEM_cert_to_DER_cert(certificate.cert_chain_pems[0].bytes().decode())
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca = trustme.CA()
    return Pki(
        ca,
        ca.issue_cert("lab-a.test", common_name="lab-a.test"),
        ca.issue_cert("lab-b.test", common_name="lab-b.test"),
        ca.issue_cert("stranger.test", common_name="stranger.test"),
    )


@pytest.fixture(scope="module")
def tls_ingest(
    pki: Pki,
    service_dsn: str,
    kafka_bootstrap: str,
    smtp_server: tuple[int, MailCatcher],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Ingest]:
    folder = tmp_path_factory.mktemp("mllp-tls")
    server = pki.ca.issue_cert("localhost", "127.0.0.1")
    files = {
        "cert": folder / "server.pem",
        "key": folder / "server.key",
        "ca": folder / "clients-ca.pem",
    }
    server.cert_chain_pems[0].write_to_path(str(files["cert"]))
    server.private_key_pem.write_to_path(str(files["key"]))
    pki.ca.cert_pem.write_to_path(str(files["ca"]))

    def tls_sources(shipped: Sources) -> Sources:
        return [
            *shipped,
            {
                "id": "tls-lab-a",
                "hl7": [{"sending_facility": "TLS-LAB-A", "sending_application": "LIS"}],
                "timezone": "Asia/Shanghai",
                "certificates": [{"subject_cn": "lab-a.test"}],
            },
            {
                "id": "tls-lab-b",
                "hl7": [{"sending_facility": "TLS-LAB-B"}],
                "certificates": [{"sha256": fingerprint(pki.lab_b)}],
            },
        ]

    with running_ingest(
        folder / "logs",
        database_url=service_dsn,
        kafka_bootstrap=kafka_bootstrap,
        smtp_port=smtp_server[0],
        VIGIL_STUDY_DIR=str(copy_studies(folder / "studies", tls_sources)),
        VIGIL_ENVIRONMENT="production",
        VIGIL_MLLP_ALLOW_PLAIN="false",
        VIGIL_MLLP_TLS_CERT_FILE=str(files["cert"]),
        VIGIL_MLLP_TLS_KEY_FILE=str(files["key"]),
        VIGIL_MLLP_TLS_CLIENT_CA_FILE=str(files["ca"]),
    ) as ingest:
        yield ingest


def control() -> str:
    return f"T{uuid.uuid4().hex[:12].upper()}"


async def receipt(db: asyncpg.Connection, message: bytes) -> asyncpg.Record:
    row = await db.fetchrow(
        "SELECT outcome, reason, event_ids FROM received_messages WHERE raw = $1", message
    )
    assert row is not None, "the message was not kept"
    return row


async def test_a_client_with_the_certificate_of_source_a_is_accepted_and_its_messages_stored(
    tls_ingest: Ingest, pki: Pki, db: asyncpg.Connection
) -> None:
    client = await MllpClient.connect(tls_ingest.mllp_port, tls=pki.client(pki.lab_a))
    try:
        message = oru("LIS", "TLS-LAB-A", control(), f"TA-{uuid.uuid4().hex[:6]}")
        ack = await client.exchange(message)
    finally:
        await client.close()

    assert ack_code(ack) == "AA"
    stored = await receipt(db, message)
    assert stored["outcome"] == "accepted"
    assert len(stored["event_ids"]) == 1
    assert tls_ingest.logged("mllp.connected", source="tls-lab-a")


async def test_a_certificate_mapped_by_its_fingerprint_stands_for_its_source(
    tls_ingest: Ingest, pki: Pki, db: asyncpg.Connection
) -> None:
    client = await MllpClient.connect(tls_ingest.mllp_port, tls=pki.client(pki.lab_b))
    try:
        message = oru("ANY", "TLS-LAB-B", control(), f"TB-{uuid.uuid4().hex[:6]}")
        assert ack_code(await client.exchange(message)) == "AA"
    finally:
        await client.close()
    assert (await receipt(db, message))["outcome"] == "accepted"


async def test_a_certificate_of_source_a_sending_the_identity_of_source_b_gets_ar_and_is_kept(
    tls_ingest: Ingest, pki: Pki, db: asyncpg.Connection
) -> None:
    before = await tls_ingest.metric(
        "vigil_ingest_rejected_total", format="mllp", reason="mllp-identity-mismatch"
    )
    client = await MllpClient.connect(tls_ingest.mllp_port, tls=pki.client(pki.lab_a))
    try:
        message = oru("LIS", "TLS-LAB-B", control(), f"TX-{uuid.uuid4().hex[:6]}")
        ack = await client.exchange(message)
    finally:
        await client.close()

    assert ack_code(ack) == "AR"
    assert err_location(ack) == "MSH^1^4"
    stored = await receipt(db, message)
    assert stored["outcome"] == "rejected"
    assert "not an identity of the authenticated source (tls-lab-a)" in stored["reason"]
    assert len(stored["event_ids"]) == 1  # only the InputRejected it owes the audit log
    after = await tls_ingest.metric(
        "vigil_ingest_rejected_total", format="mllp", reason="mllp-identity-mismatch"
    )
    assert after == before + 1


def handshake_refusal_logged(ingest: Ingest) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return bool(
            ingest.logged("mllp.tls_handshake_failed", error="PEER_DID_NOT_RETURN_A_CERTIFICATE")
        )

    return probe


async def test_a_client_without_a_certificate_is_refused_when_one_is_required(
    tls_ingest: Ingest, pki: Pki, db: asyncpg.Connection
) -> None:
    message = oru("LIS", "TLS-LAB-A", control(), f"TN-{uuid.uuid4().hex[:6]}")
    try:
        client = await MllpClient.connect(tls_ingest.mllp_port, tls=pki.client(None))
    except (ssl.SSLError, ConnectionError):
        pass  # refused during the handshake (TLS 1.2)
    else:  # TLS 1.3: the client learns of the refusal on its first read
        try:
            await client.send(message)
            assert await client.closed_by_peer(), "the connection stayed open"
        except (ssl.SSLError, ConnectionError):
            pass
        finally:
            await client.close()

    await eventually(handshake_refusal_logged(tls_ingest), what="the refused handshake logged")
    assert (
        await tls_ingest.metric(
            "vigil_mllp_connections_closed_total", reason="tls-handshake-failed"
        )
        >= 1
    )
    assert await db.fetchval("SELECT count(*) FROM received_messages WHERE raw = $1", message) == 0


async def test_a_certificate_the_ca_signed_for_no_source_is_answered_ar_and_closed(
    tls_ingest: Ingest, pki: Pki, db: asyncpg.Connection
) -> None:
    client = await MllpClient.connect(tls_ingest.mllp_port, tls=pki.client(pki.stranger))
    try:
        message = oru("LIS", "TLS-LAB-A", control(), f"TS-{uuid.uuid4().hex[:6]}")
        ack = await client.exchange(message)
        assert await client.closed_by_peer()
    finally:
        await client.close()

    assert ack_code(ack) == "AR"
    stored = await receipt(db, message)
    assert stored["outcome"] == "rejected"
    assert "stands for no source" in stored["reason"]


async def test_a_plain_mllp_client_gets_no_service_on_the_tls_port(tls_ingest: Ingest) -> None:
    client = await MllpClient.connect(tls_ingest.mllp_port)
    try:
        await client.send(oru("LIS", "TLS-LAB-A", control(), "TP-1"))
        assert await client.closed_by_peer()
    finally:
        await client.close()
