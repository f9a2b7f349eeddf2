"""What the notifier does on each signal: record the answer in the signal's notification
stream and plan who is told, from raised through escalated, amended, retracted, resolved
and reopened, and the data-quality issues the medical monitors are told about: a result
about a subject nobody enrolled, and a result Vigil could not read (flagged abnormal or
not: a result without flags may hide an abnormal value as well, and it is rare).

Every handler is idempotent: an event handled before (delivered twice by Kafka, or read
again by the catch-up from the audit log, see ``services/notifier/catch_up.py``) finds its
answer recorded and changes nothing, whatever happened to the signal since. Each checks
first, without appending, so a replay takes no append lock. A batch first holds the
notifications of its signals (:func:`hold_notifications`), so two transactions (two
instances, or the catch-up beside the Kafka consumer) never answer one signal at once and
each check reads what the other committed; a handler still returns when its append turns
out not to be new (``Appended.new``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

import asyncpg
import structlog

from services.notifier.adapters import digests, notification_log
from services.notifier.adapters.digests import HeldLine
from services.notifier.adapters.postgres import cancel_pending
from services.notifier.adapters.signal_log import ANSWERED_ISSUES
from services.notifier.domain.escalation import NotificationState
from services.notifier.domain.messages import (
    MessageContent,
    content_for_data_quality,
    digest_line,
    format_value,
)
from services.notifier.domain.planning import open_notification, recipient
from services.notifier.domain.roster import Roster
from services.notifier.handlers.context import NotifierContext, notification_state
from services.notifier.handlers.deliveries import (
    deliveries_for,
    people_on_roster,
    plan_deliveries,
    tell,
)
from shared.events import (
    DataQualityIssueRaised,
    Envelope,
    SafetySignalAmended,
    SafetySignalEscalated,
    SafetySignalRaised,
    SafetySignalReopened,
    SafetySignalResolved,
    SafetySignalRetracted,
)
from shared.events.notifications import (
    NotificationOpened,
    NotificationReissued,
    NotificationReopened,
    NotificationResolved,
    NotificationWithdrawn,
)
from shared.events.payloads import EVENT_ID_NAMESPACE

log = structlog.get_logger(__name__)


async def handle_signals(
    connection: asyncpg.Connection, envelopes: Sequence[Envelope], context: NotifierContext
) -> int:
    """Record and plan what a batch of signal events calls for; returns deliveries added.

    The batch's notifications are held first (see :func:`hold_notifications`): call it
    at the start of the transaction, or hold them yourself before anything is appended."""
    await hold_notifications(connection, envelopes)
    added = 0
    for envelope in envelopes:
        payload = envelope.payload()
        roster = context.rosters.get(payload.study or "")
        if roster is None:
            log.error("notifier.no_roster", study_id=payload.study, event_id=str(envelope.id))
            continue
        if isinstance(payload, SafetySignalRaised):
            added += await _raised(connection, envelope, payload, roster, context)
        elif isinstance(payload, SafetySignalEscalated | SafetySignalAmended):
            # an amendment that makes the grade worse (a corrected value) is told like an
            # escalation; one that makes it milder changes nothing already sent
            added += await _worsened(connection, envelope, payload, roster, context)
        elif isinstance(payload, SafetySignalRetracted):
            added += await _withdrawn(connection, envelope, payload, roster, context)
        elif isinstance(payload, SafetySignalResolved):
            added += await _resolved(connection, envelope, payload, roster, context)
        elif isinstance(payload, SafetySignalReopened):
            added += await _reopened(connection, envelope, payload, roster, context)
        elif isinstance(payload, DataQualityIssueRaised) and payload.issue in ANSWERED_ISSUES:
            added += await _data_quality(connection, envelope, payload, roster, context)
    return added


#: the issues the medical monitors must acknowledge (see ``_data_quality``)
ACKNOWLEDGED_ISSUES = frozenset(
    {"abnormal-result-unreadable", "censored-result", "conflicting-results"}
)


def notification_of(envelope: Envelope) -> uuid.UUID | None:
    """The notification a signal event belongs to: its signal's, or for a data-quality
    issue its own (None: an event that names no valid signal; its handler refuses it)."""
    if envelope.type == DataQualityIssueRaised.event_type:
        return envelope.id
    try:
        return uuid.UUID(str(envelope.data["signal_id"]))
    except (KeyError, ValueError):
        return None


async def hold_notifications(connection: asyncpg.Connection, envelopes: Sequence[Envelope]) -> None:
    """Hold the notifications these events belong to for the caller's transaction, so
    that two transactions never answer the same signal at once (each handler's check of
    what is recorded is then exact, whatever the two would record)."""
    ids = [i for envelope in envelopes if (i := notification_of(envelope)) is not None]
    await notification_log.lock_notifications(connection, ids)


async def _raised(
    connection: asyncpg.Connection,
    envelope: Envelope,
    signal: SafetySignalRaised,
    roster: Roster,
    context: NotifierContext,
) -> int:
    if await notification_state(connection, signal.signal_id) is not None:
        # opened before: by a redelivery, and perhaps withdrawn since (holding its digest
        # items again would bring a withdrawn finding back into a digest)
        return 0
    opened, planned, digest = open_notification(
        signal, raised_at=envelope.time, roster=roster, deadlines=context.deadlines
    )
    (appended,) = await notification_log.record(connection, [opened], causation_id=envelope.id)
    if not appended.new:
        return 0  # another instance opened it meanwhile
    content = MessageContent.model_validate(opened.message)
    if digest:
        now = context.clock.now()
        lines: list[HeldLine] = [
            (p.id, digest_line(content), context.links.claims(signal.signal_id, p.id, now))
            for p in digest
        ]
        await digests.hold(connection, signal.study_id, lines, signal.signal_id, envelope.time)
    people = [message.person for message in planned]
    return await plan_deliveries(
        connection, deliveries_for(people, content, "raised", context), context
    )


async def _worsened(
    connection: asyncpg.Connection,
    envelope: Envelope,
    signal: SafetySignalEscalated | SafetySignalAmended,
    roster: Roster,
    context: NotifierContext,
) -> int:
    state = await notification_state(connection, signal.signal_id)
    if state is None or state.withdrawn:
        log.warning("notifier.worsened_unknown_signal", signal_id=str(signal.signal_id))
        return 0
    if (signal.grade or 0) <= (state.grade or state.opened.grade or 0):
        return 0  # not worse than what the recipients were told
    hours = context.deadlines.hours_for(serious=state.opened.serious, grade=signal.grade)
    reissued = NotificationReissued(
        study_id=signal.study_id,
        subject_id=signal.subject_id,
        signal_id=signal.signal_id,
        reason="grade-worsened",
        grade=signal.grade,
        acknowledge_by=envelope.time + timedelta(hours=hours),
    )
    (appended,) = await notification_log.record(connection, [reissued], causation_id=envelope.id)
    if not appended.new:
        return 0  # another instance told it meanwhile
    value = (
        format_value(signal.observed_value, signal.observed_unit, signal.observed_comparator)
        or state.content().value
    )
    content = state.content().with_kind("grade-worsened", grade=signal.grade, value=value)
    deliveries = deliveries_for(
        people_on_roster(roster, state.told), content, f"grade-{signal.grade}", context
    )
    return await plan_deliveries(connection, deliveries, context)


def _caused_by(kind: str, envelope: Envelope) -> uuid.UUID:
    """The id of the notifier's answer to one signal event: a redelivered event finds it
    recorded and changes nothing; the same signal resolving again after a reopening is
    a new event, so a new answer."""
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"notification-{kind}:{envelope.id}")


async def _unanswered(
    connection: asyncpg.Connection, signal_id: uuid.UUID, answer_id: uuid.UUID
) -> NotificationState | None:
    """The signal's notification state, unless there is nothing to answer: never opened,
    withdrawn, or this answer recorded already (a redelivered event)."""
    state = await notification_state(connection, signal_id)
    if state is None or state.withdrawn or await notification_log.recorded(connection, answer_id):
        return None
    return state


async def _withdrawn(
    connection: asyncpg.Connection,
    envelope: Envelope,
    signal: SafetySignalRetracted,
    roster: Roster,
    context: NotifierContext,
) -> int:
    state = await notification_state(connection, signal.signal_id)
    if state is None or state.withdrawn:
        return 0  # never opened, or a redelivered retraction: handled with the first
    withdrawn = NotificationWithdrawn(
        study_id=signal.study_id,
        subject_id=signal.subject_id,
        signal_id=signal.signal_id,
        reason=signal.reason,
    )
    (appended,) = await notification_log.record(connection, [withdrawn], causation_id=envelope.id)
    if not appended.new:
        return 0  # another instance withdrew it meanwhile
    await cancel_pending(connection, signal.signal_id)
    # a digest reader who never saw the finding needs no word that it was withdrawn
    seen = await digests.sent_to(connection, signal.signal_id)
    await digests.drop(connection, signal.signal_id)
    content = state.content().with_kind("withdrawn", note=signal.reason)
    return await tell(
        connection,
        state,
        content,
        "withdrawn",
        roster,
        context,
        held_at=envelope.time,
        digest_people=seen,
    )


async def _resolved(
    connection: asyncpg.Connection,
    envelope: Envelope,
    signal: SafetySignalResolved,
    roster: Roster,
    context: NotifierContext,
) -> int:
    event_id = _caused_by("resolved", envelope)
    state = await _unanswered(connection, signal.signal_id, event_id)
    if state is None:
        return 0
    resolved = NotificationResolved(
        study_id=signal.study_id,
        subject_id=signal.subject_id,
        signal_id=signal.signal_id,
        reason=signal.reason,
    )
    (appended,) = await notification_log.record(
        connection, [resolved], event_ids=[event_id], causation_id=envelope.id
    )
    if not appended.new:
        return 0  # another instance answered it meanwhile
    content = state.content().with_kind("resolved", note=signal.reason)
    purpose = f"resolved-{state.resolutions + 1}"
    return await tell(connection, state, content, purpose, roster, context, held_at=envelope.time)


async def _reopened(
    connection: asyncpg.Connection,
    envelope: Envelope,
    signal: SafetySignalReopened,
    roster: Roster,
    context: NotifierContext,
) -> int:
    event_id = _caused_by("reopened", envelope)
    state = await _unanswered(connection, signal.signal_id, event_id)
    if state is None:
        return 0
    hours = context.deadlines.hours_for(serious=state.opened.serious, grade=state.grade)
    acknowledge_by = envelope.time + timedelta(hours=hours)
    reopened = NotificationReopened(
        study_id=signal.study_id,
        subject_id=signal.subject_id,
        signal_id=signal.signal_id,
        reason=signal.reason,
        acknowledge_by=acknowledge_by,
    )
    (appended,) = await notification_log.record(
        connection, [reopened], event_ids=[event_id], causation_id=envelope.id
    )
    if not appended.new:
        return 0  # another instance answered it meanwhile
    content = state.content().with_kind(
        "reopened", note=signal.reason, acknowledge_by=acknowledge_by
    )
    purpose = f"reopened-{state.reopenings + 1}"
    return await tell(connection, state, content, purpose, roster, context, held_at=envelope.time)


async def _data_quality(
    connection: asyncpg.Connection,
    envelope: Envelope,
    issue: DataQualityIssueRaised,
    roster: Roster,
    context: NotifierContext,
) -> int:
    """Tell the study's medical monitors. An unreadable abnormal result, a censored result
    a rule could not judge and conflicting reports of one result carry their
    acknowledgement link and the deadline of a signal of unknown grade: unacknowledged,
    they escalate (to the monitors' backups) as a signal does, since the value behind
    them may be critical; the other issues only inform."""
    if await notification_state(connection, envelope.id) is not None:
        return 0  # told before (the issue's own id names its notification)
    content = content_for_data_quality(issue, envelope.id)
    hours: float | None = None
    acknowledge_by = None
    if issue.issue in ACKNOWLEDGED_ISSUES:
        hours = context.deadlines.hours_for(serious=False, grade=None)
        acknowledge_by = envelope.time + timedelta(hours=hours)
        content = content.model_copy(update={"acknowledge_by": acknowledge_by})
    monitors = roster.medical_monitors()
    opened = NotificationOpened(
        study_id=issue.study_id,
        subject_id=issue.subject_id,
        signal_id=envelope.id,
        site_id=None,
        kind="data-quality",
        severity="data-quality",
        serious=False,
        grade=None,
        raised_at=envelope.time,
        recipients=tuple(recipient(p) for p in monitors),
        acknowledge_by=acknowledge_by,
        deadline_hours=hours,
        message=content.model_dump(mode="json"),
    )
    (appended,) = await notification_log.record(connection, [opened], causation_id=envelope.id)
    if not appended.new:
        return 0
    return await plan_deliveries(
        connection, deliveries_for(monitors, content, "data-quality", context), context
    )
