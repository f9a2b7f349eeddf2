"""OWASP API2:2023 Broken Authentication, on MLLP: no anonymous sender, no borrowed identity.

The shared test services run in production settings with plain MLLP explicitly allowed
and every shipped source connecting from 127.0.0.1/32 (tests.support.studies); a peer on
127.0.0.2 is therefore outside every network. TLS and client certificates are proved in
test_mllp_tls.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.support.mail import MailCatcher
from tests.support.mllp import (
    Ingest,
    MllpClient,
    ack_code,
    err_location,
    oru,
    running_ingest,
)
from tests.support.services import METRICS_TOKEN, REPO, RunningServices
from tests.support.studies import SHIPPED
from vigil.devstack.ports import free_port

pytestmark = pytest.mark.integration
OUTSIDE = "127.0.0.2"  # loopback, but not in 127.0.0.1/32
DEFAULT_STUDY = "NCT00000000"  # of the development ingest: where unknown senders go


def control() -> str:
    return f"N{uuid.uuid4().hex[:12].upper()}"


def subject() -> str:
    return f"AU-{uuid.uuid4().hex[:6]}"


async def test_a_peer_outside_every_network_gets_ar_is_kept_and_is_disconnected(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    message = oru("LIS", "PKUPH-LAB", control(), subject())
    client = await MllpClient.connect(services.mllp_port, from_host=OUTSIDE)
    try:
        ack = await client.exchange(message)
        disconnected = await client.closed_by_peer()
    finally:
        await client.close()

    assert ack_code(ack) == "AR"
    assert "stands for no source" in str(ack.segment("ERR")[8])
    assert disconnected
    row = await db.fetchrow("SELECT outcome, reason FROM received_messages WHERE raw = $1", message)
    assert row["outcome"] == "rejected"
    assert "stands for no source" in row["reason"]


async def test_a_listed_network_is_accepted_under_production_settings_with_plain_allowed(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    message = oru("LIS", "PKUPH-LAB", control(), subject())
    client = await MllpClient.connect(services.mllp_port)
    try:
        ack = await client.exchange(message)
    finally:
        await client.close()

    assert ack_code(ack) == "AA"
    row = await db.fetchrow("SELECT outcome FROM received_messages WHERE raw = $1", message)
    assert row["outcome"] == "accepted"


async def test_a_message_claiming_an_identity_its_network_does_not_hold_gets_ar(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    message = oru("LIS", "ANOTHER-LAB", control(), subject())
    client = await MllpClient.connect(services.mllp_port)
    try:
        ack = await client.exchange(message)
    finally:
        await client.close()

    assert ack_code(ack) == "AR"
    assert err_location(ack) == "MSH^1^4"
    row = await db.fetchrow("SELECT outcome FROM received_messages WHERE raw = $1", message)
    assert row["outcome"] == "rejected"


def test_production_settings_without_tls_refuse_to_start_naming_the_settings() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env.update(
        VIGIL_STUDY_DIR=str(SHIPPED),
        VIGIL_INGEST_PORT=str(free_port()),
        VIGIL_MLLP_PORT=str(free_port()),
        # never reached: the check comes first
        VIGIL_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none",
        VIGIL_KAFKA_BOOTSTRAP="127.0.0.1:1",
        VIGIL_METRICS_TOKEN=METRICS_TOKEN,  # so that the MLLP settings are what is refused
    )
    finished = subprocess.run(
        [sys.executable, "-m", "vigil", "ingest"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert finished.returncode == 2
    assert "refusing to start" in finished.stderr
    for setting in (
        "VIGIL_MLLP_TLS_CERT_FILE",
        "VIGIL_MLLP_TLS_KEY_FILE",
        "VIGIL_MLLP_ALLOW_PLAIN",
    ):
        assert setting in finished.stderr


@pytest.fixture(scope="module")
def development_ingest(
    service_dsn: str,
    kafka_bootstrap: str,
    smtp_server: tuple[int, MailCatcher],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Ingest]:
    """Ingest as `vigil dev` runs it: the shipped sources.yaml (no networks), plain MLLP."""
    folder = Path(tmp_path_factory.mktemp("mllp-dev"))
    with running_ingest(
        folder,
        database_url=service_dsn,
        kafka_bootstrap=kafka_bootstrap,
        smtp_port=smtp_server[0],
        VIGIL_ENVIRONMENT="development",
        VIGIL_MLLP_ALLOW_PLAIN="false",
        VIGIL_STUDY_DIR=str(SHIPPED),
        VIGIL_DEFAULT_STUDY=DEFAULT_STUDY,
    ) as ingest:
        yield ingest


async def test_in_development_any_loopback_peer_is_the_dev_source_with_any_identity(
    development_ingest: Ingest, db: asyncpg.Connection
) -> None:
    # its subject id carries the default study's assigning authority: that is its study
    unknown = oru("TRYOUT", "A-NEW-LAB", control(), subject()).replace(
        b"^^^NCT05262686^", f"^^^{DEFAULT_STUDY}^".encode()
    )
    shipped = oru("LIS", "PKUPH-LAB", control(), subject())
    client = await MllpClient.connect(development_ingest.mllp_port, from_host=OUTSIDE)
    try:
        answers = [await client.exchange(message) for message in (unknown, shipped)]
    finally:
        await client.close()

    assert [ack_code(ack) for ack in answers] == ["AA", "AA"]
    assert development_ingest.logged("mllp.connected", source="dev")
    # routed: an unknown sender to the default study, a listed one to its own
    for message, study in ((unknown, DEFAULT_STUDY), (shipped, "NCT05262686")):
        row = await db.fetchrow(
            "SELECT outcome, event_ids FROM received_messages WHERE raw = $1", message
        )
        assert row["outcome"] == "accepted"
        routed = await db.fetchval(
            "SELECT convert_from(value, 'UTF8')::jsonb->>'studyid' FROM ingest_outbox "
            "WHERE event_id = $1",
            row["event_ids"][0],
        )
        assert routed == study
