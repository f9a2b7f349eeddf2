"""Who owns each subject and record, kept by ingest in the receipt's transaction.

Claims are race-safe without locks of our own: ``INSERT ... ON CONFLICT DO NOTHING``
makes the first writer the owner (a concurrent claimant waits on the unique index until
that writer commits, then finds its row), and the rows are read back after the inserts, so
a request is judged against whoever really owns what it touches. Inserts go in key order,
so two requests touching the same keys take their locks in the same order.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping

import asyncpg

from services.ingest.domain.authorization import (
    Ownership,
    RecordKey,
    SubjectKey,
    SubjectOwnership,
)


async def claim_and_read(
    connection: asyncpg.Connection,
    *,
    enrolled: Mapping[SubjectKey, str],
    records: Iterable[RecordKey],
    touched: Iterable[SubjectKey],
    owner: str,
    receipt_id: uuid.UUID,
) -> Ownership:
    """Claim what nobody owns yet for ``owner``, then read the owners of everything the
    request touches. Runs inside the caller's transaction."""
    subjects = sorted(enrolled.items())
    if subjects:
        await connection.execute(
            """INSERT INTO ingest_subject_owners
                   (study_id, subject_id, owner_source, site_id, first_receipt_id)
               SELECT t.study_id, t.subject_id, $4, t.site_id, $5
               FROM unnest($1::text[], $2::text[], $3::text[]) AS t(study_id, subject_id, site_id)
               ORDER BY 1, 2
               ON CONFLICT (study_id, subject_id) DO NOTHING""",
            [key[0] for key, _ in subjects],
            [key[1] for key, _ in subjects],
            [site for _, site in subjects],
            owner,
            receipt_id,
        )
    keys = sorted(set(records), key=lambda r: (r.study_id, r.subject_id, r.kind, r.identity))
    columns = (
        [k.study_id for k in keys],
        [k.subject_id for k in keys],
        [k.kind for k in keys],
        [k.identity for k in keys],
    )
    if keys:
        await connection.execute(
            """INSERT INTO ingest_record_owners
                   (study_id, subject_id, kind, identity, owner_source, first_receipt_id)
               SELECT t.*, $5, $6
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
                   AS t(study_id, subject_id, kind, identity)
               ORDER BY 1, 2, 3, 4
               ON CONFLICT (study_id, subject_id, kind, identity) DO NOTHING""",
            *columns,
            owner,
            receipt_id,
        )
    touched_keys = sorted(set(touched))
    subject_rows = await connection.fetch(
        """SELECT o.study_id, o.subject_id, o.owner_source, o.site_id
           FROM ingest_subject_owners o
           JOIN unnest($1::text[], $2::text[]) AS t(study_id, subject_id)
             ON o.study_id = t.study_id AND o.subject_id = t.subject_id""",
        [key[0] for key in touched_keys],
        [key[1] for key in touched_keys],
    )
    record_rows = (
        await connection.fetch(
            """SELECT o.study_id, o.subject_id, o.kind, o.identity, o.owner_source
               FROM ingest_record_owners o
               JOIN unnest($1::text[], $2::text[], $3::text[], $4::text[])
                   AS t(study_id, subject_id, kind, identity)
                 ON (o.study_id, o.subject_id, o.kind, o.identity)
                    = (t.study_id, t.subject_id, t.kind, t.identity)""",
            *columns,
        )
        if keys
        else []
    )
    return Ownership(
        subjects={
            (row["study_id"], row["subject_id"]): SubjectOwnership(
                row["owner_source"], row["site_id"]
            )
            for row in subject_rows
        },
        records={
            RecordKey(row["study_id"], row["subject_id"], row["kind"], row["identity"]): row[
                "owner_source"
            ]
            for row in record_rows
        },
    )


async def move_subjects(connection: asyncpg.Connection, moves: Mapping[SubjectKey, str]) -> None:
    """Record the subjects' new sites (the caller decided the mover may move them)."""
    if not moves:
        return
    items = sorted(moves.items())
    await connection.execute(
        """UPDATE ingest_subject_owners o
           SET site_id = t.site_id, moved_at = clock_timestamp()
           FROM unnest($1::text[], $2::text[], $3::text[]) AS t(study_id, subject_id, site_id)
           WHERE o.study_id = t.study_id AND o.subject_id = t.subject_id""",
        [key[0] for key, _ in items],
        [key[1] for key, _ in items],
        [site for _, site in items],
    )
