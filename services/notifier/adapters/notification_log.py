"""The notifier's events in the audit log: append, and read notification streams back."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

import asyncpg

from services.notifier.domain.deliveries import SignalRecord
from services.notifier.domain.signature import LoggedFact
from shared.events import (
    EventPayload,
    SafetySignalRaised,
    SubjectEnrolled,
    payload_class,
    subject_stream,
    wrap,
)
from shared.events.notifications import (
    AssessmentSigned,
    DataQualityIssueAcknowledged,
    NotificationEscalated,
    NotificationOpened,
    NotificationReissued,
    NotificationReopened,
    NotificationResolved,
    NotificationWithdrawn,
    SignalAcknowledged,
    notification_stream,
)
from shared.eventstore import (
    Appended,
    NewEvent,
    PostgresEventStore,
    StoredEvent,
    append,
    read_stream,
    stored_ids,
)

SOURCE = "/vigil/notifier"
# The class of the advisory locks that serialise the handling of one notification (the
# two-key form: a lock space apart from the event store's append lock).
NOTIFICATION_LOCK_CLASS = 7_345_013
_TIMER_TYPES = [
    cls.event_type
    for cls in (
        NotificationOpened,
        NotificationEscalated,
        NotificationReissued,
        NotificationReopened,
    )
]
_CLOSING_TYPES = [
    cls.event_type
    for cls in (
        SignalAcknowledged,
        AssessmentSigned,
        DataQualityIssueAcknowledged,
        NotificationResolved,
        NotificationWithdrawn,
    )
]
# a reopening undoes an acknowledgement or a resolution before it (never a withdrawal: the
# notifier records none after one)
_TURNING_TYPES = [*_CLOSING_TYPES, NotificationReopened.event_type]


async def record(
    connection: asyncpg.Connection,
    events: Sequence[EventPayload],
    *,
    event_ids: Sequence[uuid.UUID | None] = (),
    causation_id: uuid.UUID | None = None,
    time: datetime | None = None,
) -> list[Appended]:
    """Append the notifier's events (ids derived from content unless given), in the
    caller's transaction; an event recorded before is a no-op (``new`` False)."""
    ids = list(event_ids) or [None] * len(events)
    envelopes = [
        wrap(event, source=SOURCE, event_id=event_id, causation_id=causation_id, time=time)
        for event, event_id in zip(events, ids, strict=True)
    ]
    return await append(connection, [NewEvent(envelope) for envelope in envelopes])


async def lock_notifications(
    connection: asyncpg.Connection, notification_ids: Iterable[uuid.UUID]
) -> None:
    """Hold these notifications for the caller's transaction: another transaction that
    handles one of them (a second notifier instance, the catch-up beside the Kafka
    consumer) waits until this one commits, then reads what it recorded.

    Every caller takes them all at once, in key order, before it appends anything (so
    before the event store's append lock): two holders can never wait on each other.
    Taking one again in the same transaction returns at once."""
    keys = sorted({int.from_bytes(i.bytes[:4], "big", signed=True) for i in notification_ids})
    if keys:
        await connection.execute(
            "SELECT pg_advisory_xact_lock($1, key) FROM unnest($2::int[]) AS key",
            NOTIFICATION_LOCK_CLASS,
            keys,
        )


async def notification_events(
    connection: asyncpg.Connection, signal_id: uuid.UUID
) -> list[EventPayload]:
    """Every event of one signal's notification stream, in order."""
    stored = await read_stream(connection, notification_stream(signal_id))
    return [payload_class(e.type).model_validate(e.payload) for e in stored]


async def recorded(connection: asyncpg.Connection, event_id: uuid.UUID) -> bool:
    """Whether the audit log holds this event already (a redelivered cause was handled)."""
    return bool(await stored_ids(connection, [event_id]))


async def acknowledgement(
    connection: asyncpg.Connection, event_id: uuid.UUID
) -> tuple[SignalAcknowledged, datetime] | None:
    """The acknowledgement recorded under ``event_id``, with when the audit log recorded
    it; None when there is none."""
    found = await PostgresEventStore(connection).find_event(event_id, SignalAcknowledged.event_type)
    if found is None:
        return None
    return SignalAcknowledged.model_validate_json(found.payload_text), found.recorded_at


def _fact(event: StoredEvent) -> LoggedFact:
    payload = payload_class(event.type).model_validate(event.payload)
    return LoggedFact(event.event_id, event.position, event.hash, payload)


async def signal_events(connection: asyncpg.Connection, signal_id: uuid.UUID) -> list[LoggedFact]:
    """The signal's raising event (its id is the signal's) and every later event of its
    subject stream that names it, in log order, with their stored hashes."""
    store = PostgresEventStore(connection)
    raised = await store.find_event(signal_id, SafetySignalRaised.event_type)
    if raised is None:
        return []
    history = await store.read_signal_history(raised.stream_id, signal_id)
    later = await store.read_events([event.event_id for event in history])
    return [_fact(raised), *(_fact(event) for event in later)]


async def logged_facts(
    connection: asyncpg.Connection, event_ids: Sequence[uuid.UUID]
) -> list[LoggedFact]:
    """These events with their stored hashes, in log order."""
    return [_fact(event) for event in await PostgresEventStore(connection).read_events(event_ids)]


async def open_timers(connection: asyncpg.Connection) -> list[list[EventPayload]]:
    """The timer events of every notification not acknowledged, resolved nor withdrawn
    since it was opened or last reopened."""
    timer_events = await PostgresEventStore(connection).read_open_streams(
        "notification-",
        _TIMER_TYPES,
        turning_types=_TURNING_TYPES,
        closing_types=_CLOSING_TYPES,
    )
    streams: dict[str, list[EventPayload]] = defaultdict(list)
    for event in timer_events:
        streams[event.stream_id].append(payload_class(event.type).model_validate(event.payload))
    return list(streams.values())


async def signal_record(
    connection: asyncpg.Connection, signal_id: uuid.UUID
) -> SignalRecord | None:
    """The signal's time and correlation id: for latency, and to follow one result from
    ingest to the messages about it in the logs (None: the log holds no such event)."""
    found = await PostgresEventStore(connection).read_events([signal_id])
    if not found:
        return None
    return SignalRecord(found[0].recorded_at, found[0].envelope.get("correlationid"))


async def subject_site(
    connection: asyncpg.Connection, study_id: str, subject_id: str
) -> str | None:
    """The site of the subject's latest enrolment (None: the log knows no enrolment)."""
    enrolled = await PostgresEventStore(connection).last_of_type(
        subject_stream(study_id, subject_id), SubjectEnrolled.event_type
    )
    site = enrolled.payload.get("site_id") if enrolled is not None else None
    return site if isinstance(site, str) else None
