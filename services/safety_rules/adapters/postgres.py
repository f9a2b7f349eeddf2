"""The rules service's unit of work on PostgreSQL: one transaction per batch."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg
import orjson

from shared import eventstore
from shared.events import Envelope, LabResultReported, SubjectEnrolled


class PostgresRulesUnitOfWork:
    """Runs on a connection inside the caller's transaction."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection
        # a batch holds many results of few subjects: look each subject's site up once
        self._sites: dict[tuple[str, str], str | None] = {}

    async def append(self, envelopes: Sequence[Envelope]) -> set[uuid.UUID]:
        appended = await eventstore.append(
            self._connection, [eventstore.NewEvent(envelope) for envelope in envelopes]
        )
        return {item.event_id for item in appended if item.new}

    async def site_of(self, study_id: str, subject_id: str) -> str | None:
        """The site of the subject's latest enrolment record, read from its own stream.

        Called after the batch is appended, so an enrolment in the same batch is seen."""
        key = (study_id, subject_id)
        if key not in self._sites:
            self._sites[key] = await self._site_from_stream(study_id, subject_id)
        return self._sites[key]

    async def _site_from_stream(self, study_id: str, subject_id: str) -> str | None:
        payload = await self._connection.fetchval(
            "SELECT payload_json FROM events WHERE stream_id = $1 AND type = $2 "
            "ORDER BY stream_version DESC LIMIT 1",
            f"subject-{study_id}/{subject_id}",
            SubjectEnrolled.event_type,
        )
        if payload is None:
            return None
        site: str = orjson.loads(payload)["site_id"]
        return site

    async def previous_report(
        self, result: LabResultReported, event_id: uuid.UUID
    ) -> uuid.UUID | None:
        """The latest earlier report of the same observation in the subject's stream."""
        earlier: uuid.UUID | None = await self._connection.fetchval(
            """SELECT event_id FROM events
               WHERE stream_id = $1 AND type = $2
                 AND coalesce(payload->>'observation_key', payload->>'source_message_id') = $3
                 AND position < (SELECT position FROM events WHERE event_id = $4)
               ORDER BY position DESC LIMIT 1""",
            result.stream_id,
            LabResultReported.event_type,
            result.identity,
            event_id,
        )
        return earlier

    async def enqueue(self, envelope: Envelope, topic: str) -> None:
        await self._connection.execute(
            "INSERT INTO outbox (event_id, topic, key, value) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (event_id) DO NOTHING",
            envelope.id,
            topic,
            envelope.key,
            envelope.to_json(),
        )
