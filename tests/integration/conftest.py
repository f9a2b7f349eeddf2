"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from shared.db.pool import create_pool
from tests.support.acknowledgement_stack import AcknowledgementStack, acknowledgement_stack
from tests.support.mail import MailCatcher, running_smtp_server


@pytest.fixture
async def pool(fresh_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a database private to the test."""
    pool = await create_pool(fresh_dsn)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def own_smtp() -> Iterator[tuple[int, MailCatcher]]:
    """An SMTP server of the test's own (port and mailbox): it holds only this test's mail."""
    with running_smtp_server() as server:
        yield server


@pytest.fixture(scope="module")
def notifier(
    postgres_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AcknowledgementStack]:
    """`vigil notifier` in production settings, with a broker, database and SMTP server of
    its own, shared by one module's tests."""
    with acknowledgement_stack(postgres_dsn, tmp_path_factory.mktemp("notifier")) as running:
        yield running


@pytest.fixture
async def notifier_db(notifier: AcknowledgementStack) -> AsyncIterator[asyncpg.Pool]:
    """A pool on that notifier's database (as its administrator)."""
    pool = await asyncpg.create_pool(notifier.admin_dsn, min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()
