"""The deliveries table: the notifier's durable work queue."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from services.notifier.domain.messages import Delivery


async def add_deliveries(connection: asyncpg.Connection, deliveries: Sequence[Delivery]) -> int:
    """Insert planned deliveries; ones already planned (same signal, channel, person) are kept."""
    if not deliveries:
        return 0
    rows = await connection.fetch(
        """INSERT INTO deliveries
               (delivery_id, signal_id, channel, recipient, message_id, subject_line, body_text)
           SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                                $6::text[], $7::text[])
           ON CONFLICT DO NOTHING
           RETURNING delivery_id""",
        [d.delivery_id for d in deliveries],
        [d.signal_id for d in deliveries],
        [d.channel for d in deliveries],
        [d.recipient for d in deliveries],
        [d.message_id for d in deliveries],
        [d.subject_line for d in deliveries],
        [d.body_text for d in deliveries],
    )
    return len(rows)


async def claim_due(connection: asyncpg.Connection, limit: int) -> list[Delivery]:
    """Lock up to ``limit`` due deliveries for this transaction (others skip them)."""
    rows = await connection.fetch(
        """SELECT delivery_id, signal_id, channel, recipient, message_id, subject_line, body_text
           FROM deliveries
           WHERE status = 'pending' AND next_attempt_at <= clock_timestamp()
           ORDER BY next_attempt_at
           LIMIT $1
           FOR UPDATE SKIP LOCKED""",
        limit,
    )
    return [Delivery(**dict(row)) for row in rows]


async def mark_sent(connection: asyncpg.Connection, delivery_id: uuid.UUID) -> None:
    await connection.execute(
        """UPDATE deliveries SET status = 'sent', attempts = attempts + 1,
               sent_at = clock_timestamp(), last_error = NULL
           WHERE delivery_id = $1""",
        delivery_id,
    )


async def mark_failed(
    connection: asyncpg.Connection, delivery_id: uuid.UUID, error: str, retry_at: datetime
) -> None:
    await connection.execute(
        """UPDATE deliveries SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3
           WHERE delivery_id = $1""",
        delivery_id,
        error[:2000],
        retry_at,
    )


async def attempts_of(connection: asyncpg.Connection, delivery_id: uuid.UUID) -> int:
    value: int = await connection.fetchval(
        "SELECT attempts FROM deliveries WHERE delivery_id = $1", delivery_id
    )
    return value
