"""The rules service's unit of work on PostgreSQL: one transaction per batch."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from shared import eventstore
from shared.events import Envelope, SubjectEnrolled


class PostgresRulesUnitOfWork:
    """Runs on a connection inside the caller's transaction."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection

    async def append(self, envelopes: Sequence[Envelope]) -> set[uuid.UUID]:
        return await eventstore.append(self._connection, envelopes)

    async def record_subject(self, event_id: uuid.UUID, subject: SubjectEnrolled) -> None:
        await self._connection.execute(
            """INSERT INTO subject_state
                   (study_id, subject_id, site_id, sex, birth_date, weight_kg, last_event_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (study_id, subject_id) DO UPDATE SET
                   site_id = EXCLUDED.site_id, sex = EXCLUDED.sex,
                   birth_date = EXCLUDED.birth_date, weight_kg = EXCLUDED.weight_kg,
                   last_event_id = EXCLUDED.last_event_id""",
            subject.study_id,
            subject.subject_id,
            subject.site_id,
            subject.sex.value,
            subject.birth_date,
            subject.weight_kg,
            event_id,
        )

    async def site_of(self, study_id: str, subject_id: str) -> str | None:
        site: str | None = await self._connection.fetchval(
            "SELECT site_id FROM subject_state WHERE study_id = $1 AND subject_id = $2",
            study_id,
            subject_id,
        )
        return site

    async def enqueue(self, envelope: Envelope, topic: str) -> None:
        await self._connection.execute(
            "INSERT INTO outbox (event_id, topic, key, value) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (event_id) DO NOTHING",
            envelope.id,
            topic,
            envelope.key,
            envelope.to_json(),
        )
