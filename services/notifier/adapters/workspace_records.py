"""What the workspace's audit-trail and data-quality pages read from PostgreSQL: where a
subject is enrolled, the data-quality issues with their reviews, and the ingest receipt of
the message an issue came from (its id, channel, time and outcome; never the raw text).

Reads only: the audit log through the event store, and ``received_messages`` (migration
0003; ``event_ids`` names the events each receipt owes, indexed by migration 0018).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import orjson

from shared.events import DataQualityIssueRaised, SubjectEnrolled, payload_class, subject_stream
from shared.events.reviews import DataQualityIssueReviewed
from shared.eventstore import PostgresEventStore


@dataclass(frozen=True)
class SubjectPlace:
    """Whether the log knows a subject, and the site of its latest enrolment (None: not
    enrolled, e.g. results for an unknown subject)."""

    known: bool
    site_id: str | None


async def subject_place(
    connection: asyncpg.Connection, study_id: str, subject_id: str
) -> SubjectPlace:
    store = PostgresEventStore(connection)
    stream = subject_stream(study_id, subject_id)
    if not await store.existing_streams([stream]):
        return SubjectPlace(False, None)
    enrolled = await store.last_of_type(stream, SubjectEnrolled.event_type)
    site = enrolled.payload.get("site_id") if enrolled is not None else None
    return SubjectPlace(True, site if isinstance(site, str) else None)


@dataclass(frozen=True)
class Receipt:
    """The ingest receipt of a message (what the queue shows of it)."""

    receipt_id: uuid.UUID
    channel: str
    received_at: datetime
    outcome: str


@dataclass(frozen=True)
class Review:
    person_id: str
    role: str
    reviewed_at: datetime
    note: str


@dataclass(frozen=True)
class QueuedIssue:
    """One data-quality issue as the queue lists it."""

    issue_id: uuid.UUID
    position: int
    recorded_at: datetime
    issue: DataQualityIssueRaised
    site_id: str | None
    source_message_id: str | None
    receipt: Receipt | None
    reviews: tuple[Review, ...]


async def issues(
    connection: asyncpg.Connection,
    study_ids: Sequence[str],
    *,
    limit: int,
    issue_id: uuid.UUID | None = None,
) -> list[QueuedIssue]:
    """The data-quality issues of these studies (or only ``issue_id``), newest first (at
    most ``limit``), each with its subject's site, its source message and receipt, and
    its reviews."""
    # the issue type as a literal, so that the planner uses migration 0018's partial index
    rows = await connection.fetch(
        f"""SELECT e.event_id, e.position, e.recorded_at, e.payload_json,
                  site.site_id, related.source_message_id
           FROM events e
           LEFT JOIN LATERAL (
               SELECT s.payload ->> 'site_id' AS site_id FROM events s
               WHERE s.stream_id = e.stream_id AND s.type = $2
               ORDER BY s.stream_version DESC LIMIT 1) site ON true
           LEFT JOIN LATERAL (
               SELECT r.payload ->> 'source_message_id' AS source_message_id FROM events r
               WHERE r.event_id = (e.payload ->> 'related_event_id')::uuid) related ON true
           WHERE e.type = '{DataQualityIssueRaised.event_type}'
             AND e.study_id = ANY($1::text[])
             AND ($4::uuid IS NULL OR e.event_id = $4::uuid)
           ORDER BY e.position DESC LIMIT $3""",
        list(study_ids),
        SubjectEnrolled.event_type,
        limit,
        issue_id,
    )
    found = [(row, _issue(row["payload_json"])) for row in rows]
    receipts = await receipts_of(connection, [issue.related_event_id for _, issue in found])
    reviews = await reviews_of(connection, [row["event_id"] for row, _ in found])
    return [
        QueuedIssue(
            issue_id=row["event_id"],
            position=row["position"],
            recorded_at=row["recorded_at"],
            issue=issue,
            site_id=row["site_id"],
            source_message_id=row["source_message_id"],
            receipt=receipts.get(issue.related_event_id),
            reviews=tuple(reviews.get(row["event_id"], ())),
        )
        for row, issue in found
    ]


def _issue(payload_json: str) -> DataQualityIssueRaised:
    """A recorded issue read back (the rules service and ingest build them; this reads)."""
    issue = payload_class(DataQualityIssueRaised.event_type).model_validate_json(payload_json)
    assert isinstance(issue, DataQualityIssueRaised)
    return issue


async def receipts_of(
    connection: asyncpg.Connection, event_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, Receipt]:
    """The receipt that owed each of these events (an event no receipt owed is left out:
    the rules service's own, or one a partner published straight onto Kafka)."""
    wanted = list(set(event_ids))
    if not wanted:
        return {}
    rows = await connection.fetch(
        """SELECT owed.event_id, m.receipt_id, m.channel, m.received_at, m.outcome
           FROM received_messages m, unnest(m.event_ids) AS owed(event_id)
           WHERE m.event_ids && $1::uuid[] AND owed.event_id = ANY($1::uuid[])
           ORDER BY m.received_at""",
        wanted,
    )
    return {
        row["event_id"]: Receipt(
            row["receipt_id"], row["channel"], row["received_at"], row["outcome"]
        )
        for row in rows
    }


async def reviews_of(
    connection: asyncpg.Connection, issue_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[Review]]:
    """The reviews recorded of each of these issues, oldest first."""
    if not issue_ids:
        return {}
    rows = await connection.fetch(
        f"SELECT payload_json FROM events WHERE type = '{DataQualityIssueReviewed.event_type}' "
        "AND (payload ->> 'issue_id') = ANY($1::text[]) ORDER BY position",
        [str(i) for i in issue_ids],
    )
    found: dict[uuid.UUID, list[Review]] = {}
    for row in rows:
        review = DataQualityIssueReviewed.model_validate(orjson.loads(row["payload_json"]))
        found.setdefault(review.issue_id, []).append(
            Review(review.person_id, review.role, review.reviewed_at, review.note)
        )
    return found


async def issue(connection: asyncpg.Connection, issue_id: uuid.UUID) -> QueuedIssue | None:
    """One issue by its event id (None: no such issue)."""
    study_id = await connection.fetchval(
        "SELECT study_id FROM events WHERE event_id = $1 AND type = $2",
        issue_id,
        DataQualityIssueRaised.event_type,
    )
    if study_id is None:
        return None
    found = await issues(connection, [study_id], limit=1, issue_id=issue_id)
    return found[0] if found else None
