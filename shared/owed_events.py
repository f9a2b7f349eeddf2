"""What ingest owes the audit log (``ingest_outbox``), as the other services may touch it.

Ingest re-publishes an owed event that has not reached the audit log in time, each time
later (exponential back-off: a consumer that is merely slow is not flooded with copies).
When the broker is known to have lost its log, that back-off is wrong: the copies it
held are gone, and waiting it out only makes alerts late. Whoever learns of the loss (the
rules service placing its consumer, ingest starting up) makes every owed event due now.
"""

from __future__ import annotations

import asyncpg


async def owed_events_due_now(connection: asyncpg.Connection | asyncpg.Pool) -> int:
    """Make every owed event due for re-publishing at once; returns how many moved."""
    result: str = await connection.execute(
        "UPDATE ingest_outbox SET next_check_at = clock_timestamp() "
        "WHERE next_check_at > clock_timestamp()"
    )
    return int(result.rsplit(" ", 1)[-1])
