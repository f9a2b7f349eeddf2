"""Findings held for daily digests (the ``digest_items`` working table).

Each item is a line and, for an item to acknowledge, the claims of the person's link:
the link itself is made only when the digest is sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime

import asyncpg

from services.notifier.domain.digests import HeldItems, HeldLine
from services.notifier.domain.links import LinkClaims


async def hold(
    connection: asyncpg.Connection,
    study_id: str,
    lines: Sequence[HeldLine],
    signal_id: uuid.UUID,
    held_at: datetime,
    *,
    item: str = "raised",
) -> None:
    """Keep one item about a finding (its alert, or what became of it) for some people's
    next digest: (person id, their line, their link's claims) each. Holding it again
    changes nothing."""
    await connection.executemany(
        """INSERT INTO digest_items
               (study_id, person_id, signal_id, item, line, link_claims, held_at)
           VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7) ON CONFLICT DO NOTHING""",
        [
            (study_id, person_id, signal_id, item, line, _json(claims), held_at)
            for person_id, line, claims in lines
        ],
    )


def _json(claims: LinkClaims | None) -> str | None:
    return None if claims is None else claims.model_dump_json()


def _claims(text: str | None) -> LinkClaims | None:
    return None if text is None else LinkClaims.model_validate_json(text)


async def drop(connection: asyncpg.Connection, signal_id: uuid.UUID) -> None:
    """A withdrawn signal leaves the digests not sent yet."""
    await connection.execute(
        "DELETE FROM digest_items WHERE signal_id = $1 AND digest_day IS NULL", signal_id
    )


async def sent_to(connection: asyncpg.Connection, signal_id: uuid.UUID) -> set[str]:
    """The people whose digests already carried something about the signal."""
    rows = await connection.fetch(
        "SELECT DISTINCT person_id FROM digest_items "
        "WHERE signal_id = $1 AND digest_day IS NOT NULL",
        signal_id,
    )
    return {row["person_id"] for row in rows}


async def held_before(
    connection: asyncpg.Connection, study_id: str, cutoff: datetime
) -> list[HeldItems]:
    """Per person of a study, what was held before ``cutoff`` and not sent yet."""
    rows = await connection.fetch(
        # one total order for every array, so that their elements stay aligned
        """SELECT study_id, person_id,
                  array_agg(signal_id ORDER BY held_at, signal_id, item) AS signal_ids,
                  array_agg(item ORDER BY held_at, signal_id, item) AS items,
                  array_agg(line ORDER BY held_at, signal_id, item) AS lines,
                  array_agg(link_claims::text ORDER BY held_at, signal_id, item) AS links
           FROM digest_items WHERE study_id = $1 AND digest_day IS NULL AND held_at < $2
           GROUP BY study_id, person_id ORDER BY person_id""",
        study_id,
        cutoff,
    )
    return [
        HeldItems(
            r["study_id"],
            r["person_id"],
            tuple(r["signal_ids"]),
            tuple(r["items"]),
            tuple(r["lines"]),
            tuple(_claims(text) for text in r["links"]),
        )
        for r in rows
    ]


async def mark_sent(connection: asyncpg.Connection, items: HeldItems, day: date) -> None:
    await connection.execute(
        """UPDATE digest_items AS d SET digest_day = $5
           FROM unnest($3::uuid[], $4::text[]) AS sent (signal_id, item)
           WHERE d.study_id = $1 AND d.person_id = $2
             AND d.signal_id = sent.signal_id AND d.item = sent.item""",
        items.study_id,
        items.person_id,
        list(items.signal_ids),
        list(items.items),
        day,
    )
