"""Every PostgreSQL connection Vigil opens honours the DSN's TLS parameters: with
``sslmode=verify-full`` it talks TLS to a server whose certificate comes from the given CA
and names the host, and refuses any other, saying why.

Each cluster here runs with ``ssl=on`` and a server certificate from a CA made by the test.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest
import trustme

from shared.db.migrate import require_current_schema
from shared.db.pool import create_pool
from shared.eventstore import NewEvent, append
from tests.integration.test_event_store import result
from tests.support.components import SERVICE_PASSWORD, as_service_role, migrate, scratch_dir
from vigil.devstack.ports import free_port
from vigil.devstack.postgres import PrivateCluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def give_to_server(path: Path) -> None:
    """PostgreSQL reads its key only when the server's account owns it, mode 0600."""
    path.chmod(0o600)
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(path, account.pw_uid, account.pw_gid)


@contextmanager
def tls_cluster(ca: trustme.CA, *names: str) -> Iterator[tuple[PrivateCluster, Path]]:
    """A cluster with ssl=on and a certificate for ``names``; yields it and the CA file."""
    folder = scratch_dir("vigil-test-pg-tls-")
    certificate = ca.issue_cert(*names)
    certificate.cert_chain_pems[0].write_to_path(folder / "server.crt")
    certificate.private_key_pem.write_to_path(folder / "server.key")
    give_to_server(folder / "server.key")
    ca.cert_pem.write_to_path(folder / "ca.pem")
    cluster = PrivateCluster(
        folder / "data",
        free_port(),
        fsync=False,
        log_file=folder / "log",
        settings=(
            "ssl=on",
            f"ssl_cert_file={folder / 'server.crt'}",
            f"ssl_key_file={folder / 'server.key'}",
        ),
    )
    cluster.start()
    try:
        yield cluster, folder / "ca.pem"
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


def verify_full(dsn: str, ca_file: Path) -> str:
    return f"{dsn}?sslmode=verify-full&sslrootcert={ca_file}"


@pytest.fixture(scope="module")
def right_name(ca: trustme.CA) -> Iterator[tuple[str, Path]]:
    """The administrator's verify-full DSN of a migrated cluster whose certificate names
    127.0.0.1, and the CA file."""
    with tls_cluster(ca, "127.0.0.1", "localhost") as (cluster, ca_file):
        dsn = verify_full(cluster.dsn, ca_file)
        asyncio.run(migrate(dsn))
        yield dsn, ca_file


@pytest.fixture(scope="module")
def other_name(ca: trustme.CA) -> Iterator[tuple[str, Path]]:
    """The same, but the server's certificate names another host."""
    with tls_cluster(ca, "db.example.org") as (cluster, ca_file):
        yield verify_full(cluster.dsn, ca_file), ca_file


def vigil(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vigil", *args],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_the_services_dsn_with_verify_full_talks_tls_to_the_right_server(
    right_name: tuple[str, Path],
) -> None:
    service_dsn = as_service_role(right_name[0])
    assert "sslmode=verify-full" in service_dsn
    await require_current_schema(service_dsn)
    pool = await create_pool(service_dsn, max_size=2)
    try:
        async with pool.acquire() as connection:
            encrypted = await connection.fetchval(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            )
            assert encrypted is True
            async with connection.transaction():
                appended = await append(connection, [NewEvent(result("T1", "12.0"))])
            assert [a.position for a in appended] == [1]
    finally:
        await pool.close()


async def test_the_audit_tools_connect_over_verified_tls_too(
    right_name: tuple[str, Path], tmp_path: Path
) -> None:
    done = await asyncio.to_thread(
        vigil,
        "audit",
        "verify",
        env={
            "VIGIL_DATABASE_URL": as_service_role(right_name[0]),
            "VIGIL_AUDIT_ANCHOR_FILE": str(tmp_path / "anchors.jsonl"),
        },
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("OK")


async def test_a_server_certificate_for_another_host_name_is_refused(
    other_name: tuple[str, Path],
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match=r"not valid for '127\.0\.0\.1'"):
        await asyncpg.connect(other_name[0])


async def test_vigil_db_upgrade_names_the_server_and_the_certificate_problem(
    other_name: tuple[str, Path],
) -> None:
    dsn = other_name[0].replace("://vigil@", f"://vigil:{SERVICE_PASSWORD}@")
    done = await asyncio.to_thread(vigil, "db", "upgrade", env={"VIGIL_DATABASE_ADMIN_URL": dsn})
    assert done.returncode == 1
    assert "cannot connect to PostgreSQL at 127.0.0.1:" in done.stderr
    assert "certificate verify failed" in done.stderr
    assert SERVICE_PASSWORD not in done.stderr
    assert "Traceback" not in done.stderr


async def test_a_server_signed_by_another_ca_is_refused(
    right_name: tuple[str, Path], tmp_path: Path
) -> None:
    stranger = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(stranger)
    dsn = right_name[0].replace(f"sslrootcert={right_name[1]}", f"sslrootcert={stranger}")
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        await asyncpg.connect(as_service_role(dsn))
