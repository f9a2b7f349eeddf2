"""The deliveries table: the notifier's durable outbox of messages to send.

It holds what each message says and the claims of its acknowledgement links, never a
link or a rendered body: a live token is a credential, and this is a working table that
operators and backups read (the worker renders the message when it sends it).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from services.notifier import metrics
from services.notifier.domain.deliveries import Claimed, PlannedDelivery, Unreadable
from services.notifier.domain.links import LinkClaims
from services.notifier.domain.messages import MessageContent

_COLUMNS = (
    "delivery_id, signal_id, study_id, subject_id, purpose, person_id, channel, recipient, "
    "message_id, subject_line, content::text AS content, link_claims::text AS link, "
    "item_link_claims::text AS item_links"
)


_IDS = ("delivery_id", "signal_id", "study_id", "subject_id", "person_id", "channel", "purpose")


def _delivery(row: Mapping[str, Any]) -> PlannedDelivery:
    values = dict(row)
    values["content"] = MessageContent.model_validate_json(values["content"])
    link = values["link"]
    values["link"] = None if link is None else LinkClaims.model_validate_json(link)
    items = json.loads(values["item_links"] or "[]")
    values["item_links"] = tuple(
        None if item is None else LinkClaims.model_validate(item) for item in items
    )
    return PlannedDelivery(**values)


def _claims_json(claims: LinkClaims | None) -> str | None:
    return None if claims is None else claims.model_dump_json()


def _item_links_json(delivery: PlannedDelivery) -> str | None:
    if not delivery.item_links:
        return None
    return json.dumps(
        [None if c is None else c.model_dump(mode="json") for c in delivery.item_links]
    )


async def add_deliveries(
    connection: asyncpg.Connection,
    deliveries: Sequence[PlannedDelivery],
    *,
    give_up_after_seconds: float,
) -> list[uuid.UUID]:
    """Insert planned deliveries; ones already planned (same signal, purpose, channel and
    recipient) are kept as they are. Returns the ids that are new."""
    if not deliveries:
        return []
    rows = await connection.fetch(
        """INSERT INTO deliveries
               (delivery_id, signal_id, study_id, subject_id, purpose, person_id, channel,
                recipient, message_id, subject_line, content, link_claims, item_link_claims,
                give_up_at)
           SELECT d.*, clock_timestamp() + make_interval(secs => $14)
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
                       $7::text[], $8::text[], $9::text[], $10::text[], $11::jsonb[],
                       $12::jsonb[], $13::jsonb[]) AS d
           ON CONFLICT DO NOTHING
           RETURNING delivery_id""",
        [d.delivery_id for d in deliveries],
        [d.signal_id for d in deliveries],
        [d.study_id for d in deliveries],
        [d.subject_id for d in deliveries],
        [d.purpose for d in deliveries],
        [d.person_id for d in deliveries],
        [d.channel for d in deliveries],
        [d.recipient for d in deliveries],
        [d.message_id for d in deliveries],
        [d.subject_line for d in deliveries],
        [d.content.model_dump_json() for d in deliveries],
        [_claims_json(d.link) for d in deliveries],
        [_item_links_json(d) for d in deliveries],
        give_up_after_seconds,
    )
    return [row["delivery_id"] for row in rows]


async def claim_due(
    connection: asyncpg.Connection, limit: int, *, lease_seconds: float
) -> tuple[list[Claimed], list[Unreadable]]:
    """Take up to ``limit`` due deliveries for one attempt each.

    The claim moves their next attempt past the lease and counts the attempt; it commits
    before anything is sent, so another instance skips them, and one that dies mid-send
    leaves them to be tried again after the lease."""
    rows = await connection.fetch(
        f"""WITH due AS (
                SELECT delivery_id FROM deliveries
                WHERE status = 'pending' AND next_attempt_at <= clock_timestamp()
                ORDER BY next_attempt_at
                LIMIT $1
                FOR UPDATE SKIP LOCKED)
            UPDATE deliveries AS d
            SET attempts = d.attempts + 1,
                next_attempt_at = clock_timestamp() + make_interval(secs => $2)
            FROM due WHERE d.delivery_id = due.delivery_id
            RETURNING {", ".join("d." + c.strip() for c in _COLUMNS.split(","))},
                      d.attempts, d.give_up_at""",
        limit,
        lease_seconds,
    )
    claimed, unreadable = [], []
    for row in rows:
        values = dict(row)
        attempt, give_up_at = values.pop("attempts"), values.pop("give_up_at")
        try:
            claimed.append(Claimed(_delivery(values), attempt, give_up_at))
        except (ValueError, TypeError) as error:  # pydantic's ValidationError is a ValueError
            ids = {name: values[name] for name in _IDS}
            unreadable.append(Unreadable(ids, attempt, give_up_at, error))
    return claimed, unreadable


async def mark_sent(connection: asyncpg.Connection, delivery_id: uuid.UUID) -> None:
    await connection.execute(
        """UPDATE deliveries SET status = 'sent', sent_at = clock_timestamp(), last_error = NULL
           WHERE delivery_id = $1""",
        delivery_id,
    )


async def mark_failed(
    connection: asyncpg.Connection, delivery_id: uuid.UUID, error: str, retry_at: datetime | None
) -> None:
    """Record a failed attempt: retried at ``retry_at``, or abandoned when None."""
    await connection.execute(
        """UPDATE deliveries
           SET last_error = $2, next_attempt_at = coalesce($3, next_attempt_at),
               status = CASE WHEN $3::timestamptz IS NULL THEN 'abandoned' ELSE status END
           WHERE delivery_id = $1""",
        delivery_id,
        error[:2000],
        retry_at,
    )


async def cancel_pending(
    connection: asyncpg.Connection, signal_id: uuid.UUID, *, purpose_prefix: str | None = None
) -> int:
    """Stop sending what is still pending for a signal (it was withdrawn; or, with
    ``purpose_prefix`` ``escalation-``, its escalations, once it was acknowledged)."""
    result: str = await connection.execute(
        "UPDATE deliveries SET status = 'cancelled' WHERE signal_id = $1 AND status = 'pending'"
        " AND ($2::text IS NULL OR starts_with(purpose, $2::text))",
        signal_id,
        purpose_prefix,
    )
    return int(result.rsplit(" ", 1)[-1])


async def deliveries_of(
    connection: asyncpg.Connection, signal_id: uuid.UUID
) -> list[PlannedDelivery]:
    rows = await connection.fetch(
        f"SELECT {_COLUMNS} FROM deliveries WHERE signal_id = $1 ORDER BY created_at", signal_id
    )
    return [_delivery(row) for row in rows]


async def sample_deliveries(pool: asyncpg.Pool) -> None:
    """Set the gauge of queued deliveries by channel and state (failing: pending after a
    failed attempt)."""
    rows = await pool.fetch(
        """SELECT channel,
                  CASE WHEN status = 'pending' AND attempts > 0 THEN 'failing' ELSE status END
                      AS state,
                  count(*) AS n
           FROM deliveries GROUP BY 1, 2"""
    )
    counts = {(row["channel"], row["state"]): row["n"] for row in rows}
    for channel in {"email"} | {channel for channel, _ in counts}:
        for state in metrics.DELIVERY_STATES:  # a state that emptied must read 0
            gauge = metrics.DELIVERIES_BY_STATE.labels(channel=channel, state=state)
            gauge.set(counts.get((channel, state), 0))
