"""What the workspace's audit-trail and data-quality pages read from PostgreSQL: where a
subject is enrolled, the data-quality issues with their reviews, and the ingest receipt of
the message an issue came from (its id, channel, time and outcome; never the raw text).

Reads only: the audit log through the event store, and ``received_messages`` (migration
0003; ``event_ids`` names the events each receipt owes, indexed by migration 0018).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.notifier.domain.escalation import NotificationState, fold
from shared.events import (
    DataQualityIssueRaised,
    EventPayload,
    SubjectEnrolled,
    payload_class,
    subject_stream,
)
from shared.events.notifications import notification_stream
from shared.events.reviews import DataQualityIssueReviewed
from shared.eventstore import LoggedEvent, PayloadMatch, PostgresEventStore, StoredEvent


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
    connection: asyncpg.Connection, study_ids: Sequence[str], *, limit: int
) -> list[QueuedIssue]:
    """The data-quality issues of these studies, newest first (at most ``limit``), each
    with its subject's site, its source message and receipt, and its reviews."""
    store = PostgresEventStore(connection)
    found = await store.read_latest_of_type(
        DataQualityIssueRaised.event_type, study_ids, limit=limit
    )
    return await _queued(connection, found)


async def issue(connection: asyncpg.Connection, issue_id: uuid.UUID) -> QueuedIssue | None:
    """One issue by its event id (None: no such issue)."""
    found = await PostgresEventStore(connection).find_event(
        issue_id, DataQualityIssueRaised.event_type
    )
    if found is None:
        return None
    (queued,) = await _queued(connection, [found])
    return queued


async def _queued(
    connection: asyncpg.Connection, events: Sequence[LoggedEvent | StoredEvent]
) -> list[QueuedIssue]:
    """The issues recorded as ``events``, with what the queue shows beside each."""
    if not events:
        return []
    store = PostgresEventStore(connection)
    found = [(event, _issue(event.payload)) for event in events]
    enrolments = {
        stream: enrolment.payload
        for stream, enrolment in (
            await store.last_of_type_in_streams(
                [event.stream_id for event in events], SubjectEnrolled.event_type
            )
        ).items()
    }
    related = {
        event.event_id: event.payload
        for event in await store.read_events({issue.related_event_id for _, issue in found})
    }
    receipts = await receipts_of(connection, [issue.related_event_id for _, issue in found])
    reviews = await reviews_of(connection, [event.event_id for event in events])
    return [
        QueuedIssue(
            issue_id=event.event_id,
            position=event.position,
            recorded_at=event.recorded_at,
            issue=issue,
            site_id=_text(enrolments.get(event.stream_id), "site_id"),
            source_message_id=_text(related.get(issue.related_event_id), "source_message_id"),
            receipt=receipts.get(issue.related_event_id),
            reviews=tuple(reviews.get(event.event_id, ())),
        )
        for event, issue in found
    ]


def _text(payload: Mapping[str, Any] | None, name: str) -> str | None:
    """A text field of an event's payload (None: no event, or no such text)."""
    value = None if payload is None else payload.get(name)
    return value if isinstance(value, str) else None


def _issue(payload: Mapping[str, Any]) -> DataQualityIssueRaised:
    """A recorded issue read back (the rules service and ingest build them; this reads)."""
    issue = payload_class(DataQualityIssueRaised.event_type).model_validate(payload)
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


def reviews_match(issue_ids: Iterable[uuid.UUID]) -> PayloadMatch:
    """The reviews of these issues, as the event store selects them."""
    return PayloadMatch(
        (DataQualityIssueReviewed.event_type,), "issue_id", tuple(str(i) for i in issue_ids)
    )


async def reviews_of(
    connection: asyncpg.Connection, issue_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[Review]]:
    """The reviews recorded of each of these issues, oldest first (by migration 0018's
    index on the issue a review names)."""
    if not issue_ids:
        return {}
    recorded = await PostgresEventStore(connection).read_matching(reviews_match(issue_ids))
    found: dict[uuid.UUID, list[Review]] = {}
    for event in recorded:
        review = DataQualityIssueReviewed.model_validate(event.payload)
        found.setdefault(review.issue_id, []).append(
            Review(review.person_id, review.role, review.reviewed_at, review.note)
        )
    return found


async def notification_states(
    connection: asyncpg.Connection, issue_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, NotificationState]:
    """What the notification of each of these issues says now (an issue nobody was told
    about is left out): whether it asks for an acknowledgement, by when, and whether it
    was acknowledged."""
    streams = {notification_stream(i): i for i in issue_ids}
    if not streams:
        return {}
    events: dict[uuid.UUID, list[EventPayload]] = {}
    for event in await PostgresEventStore(connection).read_streams_after(dict.fromkeys(streams, 0)):
        events.setdefault(streams[event.stream_id], []).append(
            payload_class(event.type).model_validate(event.payload)
        )
    return {
        issue_id: state
        for issue_id, stream in events.items()
        if (state := fold(stream)) is not None
    }
