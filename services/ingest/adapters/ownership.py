"""Who owns each subject and record, kept by ingest in the receipt's transaction.

Claims are race-safe without locks of our own: ``INSERT ... ON CONFLICT DO NOTHING``
makes the first writer the owner (a concurrent claimant waits on the unique index until
that writer commits, then finds its row), and the rows are read back after the inserts, so
a request is judged against whoever really owns what it touches. Inserts go in key order,
so two requests touching the same keys take their locks in the same order.

A group of requests (group commit) claims and reads in a few statements for the whole
group, yet each request is judged as if it came alone, after the ones before it: a key
is claimed for the group's first request that claims it, and a row that request claimed
(known by its ``first_receipt_id``) is hidden from the requests before it; the moves of
earlier requests are applied to what the later ones see.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg

from services.ingest.domain.authorization import (
    Ownership,
    RecordKey,
    SubjectKey,
    SubjectOwnership,
)


@dataclass(frozen=True)
class ClaimRequest:
    """One request's claims: what it would own if nobody did yet, what it touches."""

    owner: str
    receipt_id: uuid.UUID
    enrolled: Mapping[SubjectKey, str]
    # read more than once (the claims, then what each request sees): not a one-pass iterable
    records: frozenset[RecordKey]
    touched: frozenset[SubjectKey]


def _record_order(key: RecordKey) -> tuple[str, str, str, str]:
    return (key.study_id, key.subject_id, key.kind, key.identity)


@dataclass
class GroupOwnership:
    """What the database holds for a group's keys after its claims, and which row each
    request of the group claimed (visible only from that request on)."""

    subjects: dict[SubjectKey, SubjectOwnership]
    subject_claimed_by: dict[SubjectKey, uuid.UUID]
    records: dict[RecordKey, str]
    record_claimed_by: dict[RecordKey, uuid.UUID]

    def seen_by(self, request: ClaimRequest, earlier: set[uuid.UUID]) -> Ownership:
        """What ``request`` would have read alone, after the requests ``earlier`` (the
        receipt ids of the group's requests before it, and its own)."""
        subjects = {}
        for key in request.touched:
            owned = self.subjects.get(key)
            claimed = self.subject_claimed_by.get(key)
            if owned is not None and (claimed is None or claimed in earlier):
                subjects[key] = owned
        records = {}
        for record in request.records:
            owner = self.records.get(record)
            claimed = self.record_claimed_by.get(record)
            if owner is not None and (claimed is None or claimed in earlier):
                records[record] = owner
        return Ownership(subjects=subjects, records=records)

    def move(self, moves: Mapping[SubjectKey, str]) -> None:
        """A request's moves, seen by the requests after it."""
        for key, site in moves.items():
            owned = self.subjects.get(key)
            if owned is not None:
                self.subjects[key] = SubjectOwnership(owned.owner, site)


async def claim_and_read_group(
    connection: asyncpg.Connection, requests: Sequence[ClaimRequest]
) -> GroupOwnership:
    """Claim what nobody owns yet, each key for the first request of ``requests`` that
    claims it, then read the owners of everything they touch: three statements at most
    for the whole group. Runs inside the caller's transaction."""
    first_subjects: dict[SubjectKey, tuple[str, str, uuid.UUID]] = {}
    first_records: dict[RecordKey, tuple[str, uuid.UUID]] = {}
    touched: set[SubjectKey] = set()
    for request in requests:
        for key, site in request.enrolled.items():
            first_subjects.setdefault(key, (request.owner, site, request.receipt_id))
        for record in request.records:
            first_records.setdefault(record, (request.owner, request.receipt_id))
        touched.update(request.touched)
    subjects = sorted(first_subjects.items())
    if subjects:
        await connection.execute(
            """INSERT INTO ingest_subject_owners
                   (study_id, subject_id, owner_source, site_id, first_receipt_id)
               SELECT t.study_id, t.subject_id, t.owner_source, t.site_id, t.first_receipt_id
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::uuid[])
                   AS t(study_id, subject_id, owner_source, site_id, first_receipt_id)
               ORDER BY 1, 2
               ON CONFLICT (study_id, subject_id) DO NOTHING""",
            [key[0] for key, _ in subjects],
            [key[1] for key, _ in subjects],
            [owner for _, (owner, _, _) in subjects],
            [site for _, (_, site, _) in subjects],
            [receipt for _, (_, _, receipt) in subjects],
        )
    records = sorted(first_records.items(), key=lambda item: _record_order(item[0]))
    columns = (
        [key.study_id for key, _ in records],
        [key.subject_id for key, _ in records],
        [key.kind for key, _ in records],
        [key.identity for key, _ in records],
    )
    if records:
        await connection.execute(
            """INSERT INTO ingest_record_owners
                   (study_id, subject_id, kind, identity, owner_source, first_receipt_id)
               SELECT t.*
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                           $6::uuid[])
                   AS t(study_id, subject_id, kind, identity, owner_source, first_receipt_id)
               ORDER BY 1, 2, 3, 4
               ON CONFLICT (study_id, subject_id, kind, identity) DO NOTHING""",
            *columns,
            [owner for _, (owner, _) in records],
            [receipt for _, (_, receipt) in records],
        )
    touched_keys = sorted(touched)
    rows = (
        await connection.fetch(
            # one round trip for both tables: subjects (kind NULL), then records
            """SELECT o.study_id, o.subject_id, NULL::text AS kind, NULL::text AS identity,
                      o.owner_source, o.site_id, o.first_receipt_id
               FROM ingest_subject_owners o
               JOIN unnest($1::text[], $2::text[]) AS t(study_id, subject_id)
                 ON o.study_id = t.study_id AND o.subject_id = t.subject_id
               UNION ALL
               SELECT o.study_id, o.subject_id, o.kind, o.identity, o.owner_source,
                      NULL::text, o.first_receipt_id
               FROM ingest_record_owners o
               JOIN unnest($3::text[], $4::text[], $5::text[], $6::text[])
                   AS t(study_id, subject_id, kind, identity)
                 ON (o.study_id, o.subject_id, o.kind, o.identity)
                    = (t.study_id, t.subject_id, t.kind, t.identity)""",
            [key[0] for key in touched_keys],
            [key[1] for key in touched_keys],
            *columns,
        )
        if touched_keys or records
        else []
    )
    ours = {request.receipt_id for request in requests}
    found = GroupOwnership({}, {}, {}, {})
    for row in rows:
        claimed = row["first_receipt_id"] if row["first_receipt_id"] in ours else None
        if row["kind"] is None:
            key = (row["study_id"], row["subject_id"])
            found.subjects[key] = SubjectOwnership(row["owner_source"], row["site_id"])
            if claimed is not None:
                found.subject_claimed_by[key] = claimed
        else:
            record = RecordKey(row["study_id"], row["subject_id"], row["kind"], row["identity"])
            found.records[record] = row["owner_source"]
            if claimed is not None:
                found.record_claimed_by[record] = claimed
    return found


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
