"""Session fixtures: a real broker, a real PostgreSQL, a real SMTP server, real services."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.support import components
from tests.support.components import as_service_role, create_database, drop_database, migrate
from tests.support.mail import MailCatcher, running_smtp_server
from tests.support.services import RunningServices, running_services, service_env
from vigil.devstack.ports import PORT_SHARE_VARIABLE


def pytest_configure(config: pytest.Config) -> None:
    """Each xdist worker, and every process it starts, picks server ports from a slice of
    the range of its own: workers picking from the whole range took the same free port
    a moment apart ("address already in use" in a four-worker run)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if worker.startswith("gw") and count.isdigit():
        os.environ.setdefault(PORT_SHARE_VARIABLE, f"{int(worker[2:])}/{count}")


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A migrated, empty event store for the session (the administrator's DSN)."""
    with components.postgres() as dsn:
        asyncio.run(migrate(dsn))
        yield dsn


@pytest.fixture(scope="session")
def service_dsn(postgres_dsn: str) -> str:
    """The session's event store as the service role sees it."""
    return as_service_role(postgres_dsn)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    with components.kafka() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[tuple[int, MailCatcher]]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture(scope="session")
def mailbox(smtp_server: tuple[int, MailCatcher]) -> MailCatcher:
    return smtp_server[1]


@pytest.fixture(scope="session")
def services(
    postgres_dsn: str,
    kafka_bootstrap: str,
    smtp_server: tuple[int, MailCatcher],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServices]:
    """ingest, safety_rules and notifier as separate processes, wired to the fixtures.

    HTTP writes need ``services.headers`` (an API key of the source ``tests``). The
    stack runs with production settings; MLLP senders are the shipped studies' sources,
    each allowed to connect from 127.0.0.1 (``service_env``).
    """
    log_dir = tmp_path_factory.mktemp("service-logs")
    env = service_env(
        database_url=as_service_role(postgres_dsn),
        kafka_bootstrap=kafka_bootstrap,
        smtp_port=smtp_server[0],
        VIGIL_AUDIT_ANCHOR_FILE=str(Path(log_dir) / "anchors.jsonl"),
        # every test of the session calls from 127.0.0.1: refused attempts of one test must
        # not use up another's allowance (the limit itself is tested on an ingest of its own)
        VIGIL_INGEST_RATE_BURST_UNAUTHENTICATED_PER_CLIENT="500",
    )
    with running_services(env, Path(log_dir), admin_dsn=postgres_dsn) as running:
        yield running


@pytest.fixture
async def db(postgres_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(postgres_dsn)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def fresh_dsn(postgres_dsn: str) -> AsyncIterator[str]:
    """A new, migrated database on the session's server, private to one test."""
    dsn = await create_database(postgres_dsn)
    yield dsn
    await drop_database(postgres_dsn, dsn)
