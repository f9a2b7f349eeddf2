"""The subject_state read model in PostgreSQL, fed by the projection runner."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from services.safety_rules.domain.subject_state import State, apply_events, empty_state
from shared.eventstore import PayloadEvent


class SubjectStateProjection:
    """One JSON document per subject in ``subject_state``."""

    name = "subject_state"

    async def reset(self, connection: asyncpg.Connection) -> None:
        await connection.execute("DELETE FROM subject_state")

    async def apply(self, connection: asyncpg.Connection, events: Sequence[PayloadEvent]) -> None:
        keyed = [
            ((e.study_id, e.subject_id), e)
            for e in events
            if e.study_id is not None and e.subject_id is not None
        ]
        if not keyed:
            return
        keys = sorted({key for key, _ in keyed})
        rows = await connection.fetch(
            "SELECT study_id, subject_id, state::text AS state FROM subject_state "
            "WHERE (study_id, subject_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        states: dict[tuple[str, str], State] = {
            (row["study_id"], row["subject_id"]): orjson.loads(row["state"]) for row in rows
        }
        positions: dict[tuple[str, str], int] = {}
        by_subject: dict[tuple[str, str], list[tuple[str, dict[str, Any], str]]] = {}
        for key, event in keyed:
            by_subject.setdefault(key, []).append((event.type, event.payload, str(event.event_id)))
            positions[key] = event.position
        for key, events_of in by_subject.items():
            states[key] = apply_events(states.get(key) or empty_state(*key), events_of)
        await connection.executemany(
            """INSERT INTO subject_state (study_id, subject_id, state, position)
               VALUES ($1, $2, $3::jsonb, $4)
               ON CONFLICT (study_id, subject_id)
               DO UPDATE SET state = EXCLUDED.state, position = EXCLUDED.position""",
            [
                (key[0], key[1], orjson.dumps(states[key]).decode(), position)
                for key, position in positions.items()
            ],
        )
