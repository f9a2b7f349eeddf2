"""What every consuming service starts with: a current schema, topics, a pool, a broker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import structlog
from faststream.kafka import KafkaBroker

from shared.db.migrate import pending_migrations, require_current_schema
from shared.db.pool import DATABASE_ERRORS, create_pool
from shared.eventstore.postgres import role_may_update_log
from shared.kafka import make_broker, wait_for_topics
from shared.settings import CommonSettings
from shared.supervision import Supervisor

log = structlog.get_logger(__name__)
READINESS_TIMEOUT_SECONDS = 2.0


@dataclass
class ConsumerRuntime:
    """The pool and broker of a running service."""

    pool: asyncpg.Pool
    broker: KafkaBroker


@asynccontextmanager
async def consumer_runtime(
    settings: CommonSettings, *, client_id: str, supervisor: Supervisor
) -> AsyncIterator[ConsumerRuntime]:
    """Check the schema, create the topics, open the pool and the (not yet started) broker
    for the tasks ``supervisor`` runs and watches.

    The caller registers its subscribers on ``broker``, starts it and its tasks. On exit,
    in this order: every task is cancelled and awaited; the broker stops (a batch in hand
    gets FastStream's graceful time, then is cancelled); that batch's step has unwound;
    the pool closes. So no task or handler runs, or is left mid-query, without a database.
    """
    await require_current_schema(settings.database_url)
    await wait_for_topics(settings)
    pool = await create_pool(settings.database_url)
    if await role_may_update_log(pool):
        log.warning(
            "db.role_can_change_audit_log",
            hint="VIGIL_DATABASE_URL connects as a role that may UPDATE the events table; the "
            f"services should use the service role {settings.database_service_role!r} that "
            "`vigil db upgrade` creates (triggers still refuse the change).",
        )
    broker = make_broker(settings, client_id=client_id)
    try:
        async with supervisor:
            yield ConsumerRuntime(pool, broker)
    finally:
        await broker.stop()
        await supervisor.steps_ended()
        await pool.close()


async def database_problem(pool: asyncpg.Pool) -> str | None:
    """Why the database is not usable now (unreachable, or behind this code), or None."""
    try:
        async with pool.acquire() as connection:
            missing = await pending_migrations(connection)
    except DATABASE_ERRORS as error:
        return f"database unreachable: {error}"
    if missing:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in missing)
        return f"database schema is not current (missing {names}); run `vigil db upgrade`"
    return None


async def runtime_problem(runtime: ConsumerRuntime) -> str | None:
    """Why a running service cannot work now: its database does not answer with a current
    schema, or its broker does not answer; None when both do."""
    if (problem := await database_problem(runtime.pool)) is not None:
        return problem
    if not await runtime.broker.ping(READINESS_TIMEOUT_SECONDS):
        return "the event broker does not answer"
    return None
