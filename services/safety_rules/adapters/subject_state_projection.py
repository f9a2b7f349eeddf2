"""The subject_state read model in PostgreSQL, fed by the projection runner.

A batch costs a fixed number of statements, whatever its size: read the touched subjects'
documents, insert the measurements it adds into ``subject_results``, delete the ones it
supersedes, read back the entries of the few subjects whose latest or baseline values must
be re-derived, and write the documents that changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from services.safety_rules.domain.subject_state import (
    USED_TYPES,
    Entry,
    State,
    SubjectChange,
    apply_events,
    empty_state,
    rederive,
)
from shared.eventstore import PayloadEvent

Key = tuple[str, str]
_SUBJECTS = "SELECT * FROM unnest($1::text[], $2::text[])"


class SubjectStateProjection:
    """One JSON document per subject in ``subject_state``, its measurements in
    ``subject_results``. A document's ``position`` is that of the last event it used, so
    it is the same however the log was cut into batches; events of types the state does
    not use leave the document (and its position) unwritten."""

    name = "subject_state"

    async def reset(self, connection: asyncpg.Connection) -> None:
        await connection.execute("DELETE FROM subject_results")
        await connection.execute("DELETE FROM subject_state")

    async def apply(self, connection: asyncpg.Connection, events: Sequence[PayloadEvent]) -> None:
        by_subject: dict[Key, list[tuple[str, dict[str, Any], str]]] = {}
        positions: dict[Key, int] = {}
        for event in events:
            if event.type not in USED_TYPES or event.study_id is None or event.subject_id is None:
                continue
            key = (event.study_id, event.subject_id)
            by_subject.setdefault(key, []).append((event.type, event.payload, str(event.event_id)))
            positions[key] = event.position
        if not by_subject:
            return
        stored = await _read_documents(connection, list(by_subject))
        changes: dict[Key, SubjectChange] = {}
        for key, events_of in by_subject.items():
            state = stored[key][0] if key in stored else empty_state(*key)
            changes[key] = apply_events(state, events_of)
        await _insert_entries(connection, changes)
        await _delete_entries(connection, changes)
        again = [key for key, change in changes.items() if change.rederive]
        if again:
            entries = await _read_entries(connection, again)
            for key in again:
                changes[key].state = rederive(changes[key].state, entries.get(key, []))
        written = [
            (key, changes[key].state, position)
            for key, position in positions.items()
            if stored.get(key) != (changes[key].state, position)
        ]
        await _write_documents(connection, written)


async def _read_documents(
    connection: asyncpg.Connection, keys: list[Key]
) -> dict[Key, tuple[State, int]]:
    rows = await connection.fetch(
        "SELECT study_id, subject_id, state::text AS state, position FROM subject_state "
        f"WHERE (study_id, subject_id) IN ({_SUBJECTS})",
        [key[0] for key in keys],
        [key[1] for key in keys],
    )
    return {
        (row["study_id"], row["subject_id"]): (orjson.loads(row["state"]), row["position"])
        for row in rows
    }


async def _insert_entries(
    connection: asyncpg.Connection, changes: dict[Key, SubjectChange]
) -> None:
    added = [
        (key, event_id, analyte, entry)
        for key, change in changes.items()
        for event_id, (analyte, entry) in change.added.items()
    ]
    if not added:
        return
    # an entry already there is the same event stored before: replaying changes nothing
    await connection.execute(
        """INSERT INTO subject_results
               (event_id, study_id, subject_id, analyte, collected_at, entry)
           SELECT event_id::uuid, study_id, subject_id, analyte, collected_at::timestamptz,
                  entry::jsonb
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
                  AS batch (event_id, study_id, subject_id, analyte, collected_at, entry)
           ON CONFLICT (event_id) DO NOTHING""",
        [event_id for _, event_id, _, _ in added],
        [key[0] for key, _, _, _ in added],
        [key[1] for key, _, _, _ in added],
        [analyte for _, _, analyte, _ in added],
        [entry["collected_at"] for _, _, _, entry in added],
        [orjson.dumps(entry).decode() for _, _, _, entry in added],
    )


async def _delete_entries(
    connection: asyncpg.Connection, changes: dict[Key, SubjectChange]
) -> None:
    removed = [(key, event_id) for key, change in changes.items() for event_id in change.removed]
    if not removed:
        return
    await connection.execute(
        """DELETE FROM subject_results AS r
            USING unnest($1::text[], $2::text[], $3::text[])
                  AS gone (study_id, subject_id, event_id)
            WHERE r.event_id = gone.event_id::uuid
              AND (r.study_id, r.subject_id) = (gone.study_id, gone.subject_id)""",
        [key[0] for key, _ in removed],
        [key[1] for key, _ in removed],
        [event_id for _, event_id in removed],
    )


async def _read_entries(
    connection: asyncpg.Connection, keys: list[Key]
) -> dict[Key, list[tuple[str, Entry]]]:
    rows = await connection.fetch(
        "SELECT study_id, subject_id, analyte, entry::text AS entry FROM subject_results "
        f"WHERE (study_id, subject_id) IN ({_SUBJECTS})",
        [key[0] for key in keys],
        [key[1] for key in keys],
    )
    entries: dict[Key, list[tuple[str, Entry]]] = {}
    for row in rows:
        key = (row["study_id"], row["subject_id"])
        entries.setdefault(key, []).append((row["analyte"], orjson.loads(row["entry"])))
    return entries


async def _write_documents(
    connection: asyncpg.Connection, written: list[tuple[Key, State, int]]
) -> None:
    if not written:
        return
    await connection.execute(
        """INSERT INTO subject_state (study_id, subject_id, state, position)
           SELECT study_id, subject_id, state::jsonb, position
             FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])
                  AS batch (study_id, subject_id, state, position)
           ON CONFLICT (study_id, subject_id)
           DO UPDATE SET state = EXCLUDED.state, position = EXCLUDED.position""",
        [key[0] for key, _, _ in written],
        [key[1] for key, _, _ in written],
        [orjson.dumps(state).decode() for _, state, _ in written],
        [position for _, _, position in written],
    )
