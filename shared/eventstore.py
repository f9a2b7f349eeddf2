"""Appending events to the PostgreSQL event store, in batches, idempotent on event id."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from shared.events import Envelope, LabResultReported


def stream_of(envelope: Envelope) -> str:
    """Events of a subject live in the subject's stream, whatever their type."""
    return f"subject-{envelope.subject or envelope.study_id}"


def _clinical_time(envelope: Envelope) -> object:
    payload = envelope.payload()
    if isinstance(payload, LabResultReported):
        return payload.collected_at
    return None


async def append(connection: asyncpg.Connection, envelopes: Sequence[Envelope]) -> set[uuid.UUID]:
    """Append a batch in one statement; returns the ids that were new.

    An event id already stored is skipped, so a redelivered message is a no-op.
    Must run inside the caller's transaction so the batch and what follows from it
    commit together.
    """
    unique = list({envelope.id: envelope for envelope in envelopes}.values())
    if not unique:
        return set()
    rows = await connection.fetch(
        """INSERT INTO events
               (event_id, stream_id, type, study_id, subject_id, clinical_time, source, envelope)
           SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                                $6::timestamptz[], $7::text[], $8::jsonb[])
           ON CONFLICT (event_id) DO NOTHING
           RETURNING event_id""",
        [e.id for e in unique],
        [stream_of(e) for e in unique],
        [e.type for e in unique],
        [e.study_id for e in unique],
        [(e.subject or "").partition("/")[2] or None for e in unique],
        [_clinical_time(e) for e in unique],
        [e.source for e in unique],
        [e.to_json().decode() for e in unique],
    )
    return {row["event_id"] for row in rows}
