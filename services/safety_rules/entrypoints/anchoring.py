"""The audit log's anchoring loop: the chain head written outside the database (a file)
every VIGIL_AUDIT_ANCHOR_INTERVAL_SECONDS, so that a rewrite of the log can be detected."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import structlog

from shared.clock import Clock
from shared.db.pool import DATABASE_ERRORS
from shared.eventstore.anchors import record_anchor
from shared.supervision import Progress

log = structlog.get_logger(__name__)


async def anchor_periodically(
    pool: asyncpg.Pool,
    progress: Progress,
    *,
    every_seconds: float,
    anchor_file: Path,
    clock: Clock,
) -> None:
    """Write the chain head to the anchor file (outside the database) every interval."""
    progress.idle()
    while True:
        await asyncio.sleep(every_seconds)
        progress.working()
        try:
            async with pool.acquire() as connection:
                anchor = await record_anchor(connection, anchor_file, "anchored", clock=clock)
        except DATABASE_ERRORS as error:
            progress.step_failed(error)
            log.error("audit.anchor_failed", error=repr(error))
            continue
        progress.done()
        log.info("audit.anchored", position=anchor.position)
