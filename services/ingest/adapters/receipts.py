"""Durable receipt: the raw message and the events it became, stored before any answer.

``received_messages`` keeps each message verbatim and is append-only. ``ingest_outbox``
holds every event ingest owes the audit log; the re-drive step republishes the ones that
have not reached ``events`` by their deadline, so neither a broker that forgets (the dev
broker keeps messages in memory) nor a crash between receipt and publication loses them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

import asyncpg
import orjson

from shared.db.receipts import ReceiptRow, insert_receipt


@dataclass(frozen=True)
class Outgoing:
    """One record ingest must publish: an event, or a dead letter whose event is known."""

    event_id: uuid.UUID
    topic: str
    key: bytes | None
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Receipt:
    """A received message as it arrived."""

    channel: str
    source: str
    content_type: str | None
    raw: bytes
    outcome: Literal["accepted", "rejected"]
    reason: str | None = None
    principal_source: str | None = None
    """The authenticated source that sent it (None: not authenticated)."""
    credential: str | None = None
    """How that source was authenticated, e.g. ``api-key:<key id>``; never a secret."""
    raw_truncated: bool = False
    """Only the first bytes were kept (a body over the size cap, or a refused request
    whose whole body was never read)."""


async def record_receipt(
    connection: asyncpg.Connection,
    receipt: Receipt,
    outgoing: Sequence[Outgoing],
    *,
    deadline: timedelta,
    receipt_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Store the message and what it owes the audit log, in one transaction; a rejected
    message's dead letter names its ``receipt_id``, chosen before."""
    receipt_id = receipt_id or uuid.uuid4()
    async with connection.transaction():
        await insert_receipt(
            connection,
            ReceiptRow(
                receipt_id=receipt_id,
                channel=receipt.channel,
                source=receipt.source,
                content_type=receipt.content_type,
                raw=receipt.raw,
                outcome=receipt.outcome,
                reason=receipt.reason,
                event_ids=tuple(item.event_id for item in outgoing),
                principal_source=receipt.principal_source,
                credential=receipt.credential,
                raw_truncated=receipt.raw_truncated,
            ),
        )
        if outgoing:
            # a resent message owes the same events: the first row stands
            await connection.executemany(
                """INSERT INTO ingest_outbox (event_id, receipt_id, topic, key, value, headers,
                       next_check_at)
                   VALUES ($1, $2, $3, $4, $5, $6::jsonb, clock_timestamp() + $7)
                   ON CONFLICT (event_id) DO NOTHING""",
                [
                    (
                        item.event_id,
                        receipt_id,
                        item.topic,
                        item.key,
                        item.value,
                        orjson.dumps(item.headers).decode(),
                        deadline,
                    )
                    for item in outgoing
                ],
            )
    return receipt_id


async def mark_published(connection: asyncpg.Connection, event_ids: Sequence[uuid.UUID]) -> None:
    await connection.execute(
        "UPDATE ingest_outbox SET published_at = clock_timestamp() WHERE event_id = ANY($1)",
        list(event_ids),
    )


# An owed event is settled once it is in the audit log, or once the rules service
# dead-lettered it (a poison record: its InputRejected is in the audit log instead).
_SETTLED = (
    "(EXISTS (SELECT 1 FROM events e WHERE e.event_id = o.event_id)"
    " OR EXISTS (SELECT 1 FROM dead_lettered_events d WHERE d.event_id = o.event_id))"
)


async def settle(connection: asyncpg.Connection) -> int:
    """Forget owed events that are settled (stored, or dead-lettered by the rules service,
    which the re-drive must never send again); returns how many."""
    result: str = await connection.execute(f"DELETE FROM ingest_outbox o WHERE {_SETTLED}")
    return int(result.rsplit(" ", 1)[-1])


async def unrecorded(connection: asyncpg.Connection) -> tuple[int, float | None]:
    """How many owed events are not settled yet, and the oldest one's age in seconds (by
    the database's clock)."""
    row = await connection.fetchrow(
        """SELECT count(*) AS n,
                  extract(epoch FROM clock_timestamp() - min(o.created_at))::float8 AS age
           FROM ingest_outbox o
           WHERE NOT """
        + _SETTLED
    )
    return row["n"], row["age"]


async def claim_overdue(
    connection: asyncpg.Connection, limit: int, *, deadline: timedelta
) -> list[Outgoing]:
    """Lock overdue owed events not settled and push their next check back
    (exponentially: a consumer that is merely slow is not flooded with copies)."""
    rows = await connection.fetch(
        """UPDATE ingest_outbox o
           SET redrives = redrives + 1,
               next_check_at = clock_timestamp() + $2::interval * power(2, least(redrives + 1, 6))
           WHERE event_id IN (
               SELECT event_id FROM ingest_outbox
               WHERE next_check_at <= clock_timestamp()
               ORDER BY next_check_at LIMIT $1 FOR UPDATE SKIP LOCKED)
             AND NOT """
        + _SETTLED
        + """
           RETURNING event_id, topic, key, value, headers::text AS headers""",
        limit,
        deadline,
    )
    return [
        Outgoing(
            row["event_id"],
            row["topic"],
            None if row["key"] is None else bytes(row["key"]),
            bytes(row["value"]),
            orjson.loads(row["headers"]),
        )
        for row in rows
    ]
