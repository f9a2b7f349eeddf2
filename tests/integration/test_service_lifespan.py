"""A service's lifespan, on a real PostgreSQL and a real broker: leaving it ends every task's
step (finished or cancelled) before the pool closes, so nothing is cut off mid-query."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from services.settings import VigilSettings
from shared.consumer_runtime import consumer_runtime
from shared.supervision import Progress, Supervisor, TaskBody

pytestmark = pytest.mark.integration


async def test_leaving_the_runtime_ends_a_step_mid_query_before_the_pool_closes(
    fresh_dsn: str, kafka_bootstrap: str
) -> None:
    settings = VigilSettings(
        database_url=fresh_dsn, kafka_bootstrap=kafka_bootstrap, kafka_partitions=1
    )
    supervisor = Supervisor("test-lifespan", check_every=0.05)
    in_query = asyncio.Event()
    pool_closing_when_the_step_ended: list[bool] = []

    def querying(pool: asyncpg.Pool) -> TaskBody:
        async def run(progress: Progress) -> None:
            with progress.step():
                try:
                    async with pool.acquire() as connection:
                        in_query.set()
                        await connection.execute("SELECT pg_sleep(60)")
                finally:
                    pool_closing_when_the_step_ended.append(pool.is_closing())

        return run

    began = time.monotonic()
    async with consumer_runtime(
        settings, client_id="test-lifespan", supervisor=supervisor
    ) as runtime:
        supervisor.start("querying", querying(runtime.pool))
        await asyncio.wait_for(in_query.wait(), 30)

    assert pool_closing_when_the_step_ended == [False]
    assert runtime.pool.is_closing()
    assert time.monotonic() - began < 30  # the query was cancelled, not waited out
    assert {task["state"] for task in supervisor.report()} == {"stopped"}
