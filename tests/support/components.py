"""Starting the broker and PostgreSQL for tests: private processes, or testcontainers."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from shared.db.migrate import upgrade
from vigil.devstack.ports import free_port
from vigil.devstack.postgres import PrivateCluster
from vigil.devstack.tansu import TansuBroker

SERVICE_ROLE = "vigil_app"
SERVICE_PASSWORD = "vigil-test"


def as_service_role(admin_dsn: str) -> str:
    """The same database, reached as the role the services use."""
    parts = urlsplit(admin_dsn)
    netloc = f"{SERVICE_ROLE}:{SERVICE_PASSWORD}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


async def migrate(admin_dsn: str) -> None:
    """``vigil db upgrade`` as the administrator, creating the service role."""
    await upgrade(admin_dsn, service_role=SERVICE_ROLE, service_password=SERVICE_PASSWORD)


async def stoppable_cluster(prefix: str) -> PrivateCluster:
    """A migrated PostgreSQL cluster of the test's own, which it may stop and start
    (``synchronous_commit`` on, the default: a kill must prove something)."""
    folder = scratch_dir(prefix)
    cluster = PrivateCluster(folder / "data", free_port(), log_file=folder / "log")
    cluster.start()
    await migrate(cluster.dsn)
    return cluster


async def backend_waiting_on_lock(watcher: asyncpg.Connection, table: str) -> int | None:
    """The pid of a backend waiting on a lock in a statement naming ``table``, or None.
    ``watcher`` must be a connection of its own, outside any transaction
    (pg_stat_activity is read once per transaction)."""
    pid: int | None = await watcher.fetchval(
        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
        f"%{table}%",
    )
    return pid


async def create_database(admin_dsn: str, prefix: str = "test") -> str:
    """A new, migrated database on the same server; returns its administrator's DSN."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    dsn = admin_dsn.rsplit("/", 1)[0] + f"/{name}"
    await migrate(dsn)
    return dsn


async def drop_database(admin_dsn: str, dsn: str) -> None:
    """Drop a database made by :func:`create_database`, whoever is still connected."""
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f"DROP DATABASE {dsn.rsplit('/', 1)[1]} WITH (FORCE)")
    finally:
        await admin.close()


def use_containers() -> bool:
    """VIGIL_TEST_CONTAINERS=1 and a Docker engine that answers."""
    if os.environ.get("VIGIL_TEST_CONTAINERS") != "1" or not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def scratch_dir(prefix: str) -> Path:
    """A folder the postgres account can reach (pytest's tmp folders are private to root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


@contextmanager
def postgres() -> Iterator[str]:
    """A DSN of a fresh, empty PostgreSQL database."""
    if use_containers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:15", driver=None) as container:
            yield container.get_connection_url()
        return
    folder = scratch_dir("vigil-test-pg-")
    cluster = PrivateCluster(folder / "data", free_port(), fsync=False, log_file=folder / "log")
    cluster.start()
    try:
        yield cluster.dsn
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def tansu() -> Iterator[TansuBroker]:
    """A Tansu broker on a free port (the caller may stop and restart it)."""
    folder = scratch_dir("vigil-test-tansu-")
    broker = TansuBroker(free_port(), log_file=folder / "log")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def kafka() -> Iterator[str]:
    """Bootstrap address of a Kafka-compatible broker."""
    if use_containers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    with tansu() as broker:
        yield broker.bootstrap
