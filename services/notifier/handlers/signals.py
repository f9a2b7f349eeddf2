"""What the notifier does on each signal: record the answer in the signal's notification
stream and plan who is told, from raised through escalated, amended, retracted, resolved
and reopened, and the data-quality issues the medical monitors are told about: a result
about a subject nobody enrolled, and a result Vigil could not read (flagged abnormal or
not: a result without flags may hide an abnormal value as well, and it is rare).

Every handler is idempotent: an event handled before (delivered twice by Kafka, or read
again by the catch-up from the audit log, see
``services/notifier/entrypoints/catch_up.py``) finds its
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

import structlog

from services.notifier.domain.digests import HeldLine
from services.notifier.domain.escalation import NotificationState
from services.notifier.domain.messages import (
    MessageContent,
    content_for_data_quality,
    digest_line,
    signal_value,
)
from services.notifier.domain.planning import (
    ANSWERED_ISSUES,
    DATA_QUALITY_ROUTES,
    acknowledgement_due,
    data_quality_recipients,
    goes_to_digest,
    open_notification,
    recipient,
    route_of,
    signal_kind,
)
from services.notifier.domain.roster import Roster
from services.notifier.handlers.context import NotifierContext, notification_state
from services.notifier.handlers.deliveries import (
    deliveries_for,
    people_on_roster,
    plan_deliveries,
    tell,
)
from services.notifier.handlers.ports import NotifierUnitOfWork
from shared.events import (
    DataQualityIssueRaised,
    Envelope,
    SafetySignalAmended,
    SafetySignalEscalated,
    SafetySignalRaised,
    SafetySignalReopened,
    SafetySignalResolved,
    SafetySignalRetracted,
    SafetySignalRouted,
    SignalEvent,
)
from shared.events.notifications import (
    NotificationOpened,
    NotificationReissued,
    NotificationReopened,
    NotificationResolved,
    NotificationRouted,
    NotificationWithdrawn,
)
from shared.events.payloads import EVENT_ID_NAMESPACE

log = structlog.get_logger(__name__)


async def handle_signals(
    uow: NotifierUnitOfWork, envelopes: Sequence[Envelope], context: NotifierContext
) -> int:
    """Record and plan what a batch of signal events calls for, in one transaction of
    ``uow`` (a savepoint in the caller's, when it entered ``uow`` already); returns
    deliveries added.

    The batch's notifications are held first (see :func:`hold_notifications`): call it
    at the start of the transaction, or hold them yourself before anything is appended."""
    async with uow:
        return await _handle(uow, envelopes, context)


async def _handle(
    uow: NotifierUnitOfWork, envelopes: Sequence[Envelope], context: NotifierContext
) -> int:
    await hold_notifications(uow, envelopes)
    added = 0
    for envelope in envelopes:
        payload = envelope.payload()
        roster = context.rosters.get(payload.study or "")
        if roster is None:
            log.error("notifier.no_roster", study_id=payload.study, event_id=str(envelope.id))
            continue
        if isinstance(payload, SafetySignalRaised):
            added += await _raised(uow, envelope, payload, roster, context)
        elif isinstance(payload, SafetySignalEscalated | SafetySignalAmended):
            # an amendment that makes the grade worse (a corrected value) is told like an
            # escalation; one that makes it milder changes nothing already sent
            added += await _worsened(uow, envelope, payload, roster, context)
        elif isinstance(payload, SafetySignalRetracted):
            added += await _withdrawn(uow, envelope, payload, roster, context)
        elif isinstance(payload, SafetySignalResolved):
            added += await _resolved(uow, envelope, payload, roster, context)
        elif isinstance(payload, SafetySignalReopened):
            added += await _reopened(uow, envelope, payload, roster, context)
        elif isinstance(payload, SafetySignalRouted):
            added += await _routed(uow, envelope, payload, roster, context)
        elif isinstance(payload, DataQualityIssueRaised) and payload.issue in ANSWERED_ISSUES:
            added += await _data_quality(uow, envelope, payload, roster, context)
    return added


def why_not_acted_on(envelope: Envelope, context: NotifierContext) -> str | None:
    """Why the notifier cannot act on this valid event (None: it can, or it rightly
    ignores it, as a data-quality issue of a kind nobody is told about).

    A signal of a study with no roster reaches nobody, and a type the notifier does not
    answer is a producer's mistake (the consumer refuses any event off its topic before
    this, so only a direct caller meets that case): the consumer dead-letters either, so
    an operator learns of it. The reason names the type
    or the field and the problem, never a value."""
    # every signal event is dispatched by ``_handle``, so the base class says it
    event = envelope.payload()
    if isinstance(event, DataQualityIssueRaised):
        if event.issue not in ANSWERED_ISSUES:
            return None
    elif not isinstance(event, SignalEvent):
        return f"the notifier does not act on events of type {envelope.type}"
    if context.rosters.get(event.study or "") is None:
        return "study_id: the notifier has no roster for this study"
    return None


#: the issues their recipients must acknowledge (see ``_data_quality``)
ACKNOWLEDGED_ISSUES = frozenset(
    issue for issue, route in DATA_QUALITY_ROUTES.items() if route.acknowledged
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


async def hold_notifications(uow: NotifierUnitOfWork, envelopes: Sequence[Envelope]) -> None:
    """Hold the notifications these events belong to for the caller's transaction, so
    that two transactions never answer the same signal at once (each handler's check of
    what is recorded is then exact, whatever the two would record)."""
    ids = [i for envelope in envelopes if (i := notification_of(envelope)) is not None]
    await uow.lock_notifications(ids)


async def _raised(
    uow: NotifierUnitOfWork,
    envelope: Envelope,
    signal: SafetySignalRaised,
    roster: Roster,
    context: NotifierContext,
) -> int:
    if await notification_state(uow, signal.signal_id) is not None:
        # opened before: by a redelivery, and perhaps withdrawn since (holding its digest
        # items again would bring a withdrawn finding back into a digest)
        return 0
    opened, planned, digest = open_notification(
        signal, raised_at=envelope.time, roster=roster, deadlines=context.deadlines
    )
    (appended,) = await uow.record([opened], causation_id=envelope.id)
    if not appended.new:
        return 0  # another instance opened it meanwhile
    content = MessageContent.model_validate(opened.message)
    if digest:
        now = context.clock.now()
        line = digest_line(content)  # the same line for everyone
        lines: list[HeldLine] = [
            (p.id, line, context.links.claims(signal.signal_id, p.id, now)) for p in digest
        ]
        await uow.hold_digest_items(signal.study_id, lines, signal.signal_id, envelope.time)
    people = [message.person for message in planned]
    return await plan_deliveries(uow, deliveries_for(people, content, "raised", context), context)


async def _worsened(
    uow: NotifierUnitOfWork,
    envelope: Envelope,
    signal: SafetySignalEscalated | SafetySignalAmended,
    roster: Roster,
    context: NotifierContext,
) -> int:
    state = await notification_state(uow, signal.signal_id)
    if state is None or state.withdrawn:
        log.warning("notifier.worsened_unknown_signal", signal_id=str(signal.signal_id))
        return 0
    if (signal.grade or 0) <= (state.grade or state.opened.grade or 0):
        return 0  # not worse than what the recipients were told
    hours = context.deadlines.hours_for(serious=state.opened.serious, grade=signal.grade)
    deadline = signal.reporting_deadline if isinstance(signal, SafetySignalEscalated) else None
    reissued = NotificationReissued(
        study_id=signal.study_id,
        subject_id=signal.subject_id,
        signal_id=signal.signal_id,
        reason="grade-worsened",
        grade=signal.grade,
        acknowledge_by=acknowledgement_due(envelope.time, hours, deadline)[0],
    )
    (appended,) = await uow.record([reissued], causation_id=envelope.id)
    if not appended.new:
        return 0  # another instance told it meanwhile
    value = (
        signal_value(
            signal.observed_value,
            signal.observed_unit,
            signal.observed_comparator,
            signal.computed_values,
        )
        or state.content().value
    )
    content = state.content().with_kind("grade-worsened", grade=signal.grade, value=value)
    deliveries = deliveries_for(
        people_on_roster(roster, state.told), content, f"grade-{signal.grade}", context
    )
    return await plan_deliveries(uow, deliveries, context)


def _caused_by(kind: str, envelope: Envelope) -> uuid.UUID:
    """The id of the notifier's answer to one signal event: a redelivered event finds it
    recorded and changes nothing; the same signal resolving again after a reopening is
    a new event, so a new answer."""
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"notification-{kind}:{envelope.id}")


async def _unanswered(
    uow: NotifierUnitOfWork, signal_id: uuid.UUID, answer_id: uuid.UUID
) -> NotificationState | None:
    """The signal's notification state, unless there is nothing to answer: never opened,
    withdrawn, or this answer recorded already (a redelivered event)."""
    state = await notification_state(uow, signal_id)
    if state is None or state.withdrawn or await uow.recorded(answer_id):
        return None
    return state


async def _withdrawn(
    uow: NotifierUnitOfWork,
    envelope: Envelope,
    signal: SafetySignalRetracted,
    roster: Roster,
    context: NotifierContext,
) -> int:
    state = await notification_state(uow, signal.signal_id)
    if state is None or state.withdrawn:
        return 0  # never opened, or a redelivered retraction: handled with the first
    withdrawn = NotificationWithdrawn(
        study_id=signal.study_id,
        subject_id=signal.subject_id,
        signal_id=signal.signal_id,
        reason=signal.reason,
    )
    (appended,) = await uow.record([withdrawn], causation_id=envelope.id)
    if not appended.new:
        return 0  # another instance withdrew it meanwhile
    await uow.cancel_pending(signal.signal_id)
    # a digest reader who never saw the finding needs no word that it was withdrawn
    seen = await uow.digests_sent_to(signal.signal_id)
    await uow.drop_digest_items(signal.signal_id)
    content = state.content().with_kind("withdrawn", note=signal.reason)
    return await tell(
        uow,
        state,
        content,
        "withdrawn",
        roster,
        context,
        held_at=envelope.time,
        digest_people=seen,
    )


async def _resolved(
    uow: NotifierUnitOfWork,
    envelope: Envelope,
    signal: SafetySignalResolved,
    roster: Roster,
    context: NotifierContext,
) -> int:
    event_id = _caused_by("resolved", envelope)
    state = await _unanswered(uow, signal.signal_id, event_id)
    if state is None:
        return 0
    resolved = NotificationResolved(
        study_id=signal.study_id,
        subject_id=signal.subject_id,
        signal_id=signal.signal_id,
        reason=signal.reason,
    )
    (appended,) = await uow.record([resolved], event_ids=[event_id], causation_id=envelope.id)
    if not appended.new:
        return 0  # another instance answered it meanwhile
    content = state.content().with_kind("resolved", note=signal.reason)
    purpose = f"resolved-{state.resolutions + 1}"
    return await tell(uow, state, content, purpose, roster, context, held_at=envelope.time)


async def _reopened(
    uow: NotifierUnitOfWork,
    envelope: Envelope,
    signal: SafetySignalReopened,
    roster: Roster,
    context: NotifierContext,
) -> int:
    event_id = _caused_by("reopened", envelope)
    state = await _unanswered(uow, signal.signal_id, event_id)
    if state is None:
        return 0
    hours = context.deadlines.hours_for(serious=state.opened.serious, grade=state.grade)
    # no longer than the interval the notification was opened with (a rule's deadline
    # for its action may have made it shorter)
    hours = min(hours, state.opened.deadline_hours or hours)
    acknowledge_by = envelope.time + timedelta(hours=hours)
    reopened = NotificationReopened(
        study_id=signal.study_id,
        subject_id=signal.subject_id,
        signal_id=signal.signal_id,
        reason=signal.reason,
        acknowledge_by=acknowledge_by,
    )
    (appended,) = await uow.record([reopened], event_ids=[event_id], causation_id=envelope.id)
    if not appended.new:
        return 0  # another instance answered it meanwhile
    content = state.content().with_kind(
        "reopened", note=signal.reason, acknowledge_by=acknowledge_by
    )
    purpose = f"reopened-{state.reopenings + 1}"
    return await tell(uow, state, content, purpose, roster, context, held_at=envelope.time)


async def _routed(
    uow: NotifierUnitOfWork,
    envelope: Envelope,
    signal: SafetySignalRouted,
    roster: Roster,
    context: NotifierContext,
) -> int:
    """The signal's subject is now known at a site: tell the people the signal's routing
    names there (investigator, sub-investigator) who were not told yet, with their
    acknowledgement link; for information only when the signal was acknowledged or
    resolved meanwhile. From now on they may acknowledge it, and they (and their backups)
    are in its escalation chain."""
    state = await notification_state(uow, signal.signal_id)
    if state is None:
        # its raising is not answered yet: nothing is recorded, so the catch-up, which
        # reads the raising first, answers this again after it
        log.warning("notifier.routed_unknown_signal", signal_id=str(signal.signal_id))
        return 0
    if state.withdrawn or state.site_id == signal.site_id:
        return 0  # retracted, or routed there before (a redelivered event)
    event_id = _caused_by("routed", envelope)
    if await uow.recorded(event_id):
        return 0
    people = [
        p
        for p in roster.recipients_for(signal.site_id, signal_kind(state.opened))
        if p.id not in state.told
    ]
    digest = [p for p in people if goes_to_digest(state.opened, p, roster)]
    now_people = [p for p in people if p not in digest]
    informed = bool(state.acknowledged_by) or state.resolved
    acknowledge_by = None
    hours = state.opened.deadline_hours
    if not informed and state.acknowledge_by is None and hours and now_people:
        acknowledge_by = envelope.time + timedelta(hours=hours)  # the clock had stopped
    routed = NotificationRouted(
        study_id=signal.study_id,
        subject_id=signal.subject_id,
        signal_id=signal.signal_id,
        site_id=signal.site_id,
        recipients=tuple(recipient(p) for p in now_people),
        digest_recipients=tuple(recipient(p) for p in digest),
        acknowledge_by=acknowledge_by,
    )
    (appended,) = await uow.record([routed], event_ids=[event_id], causation_id=envelope.id)
    if not appended.new:
        return 0  # another instance answered it meanwhile
    content = state.content()
    if informed:
        note = (
            f"resolved: {state.resolved_reason}"
            if state.resolved
            else "acknowledged before the subject's site was known"
        )
        content = content.with_kind("routed-acknowledged", site_id=signal.site_id, note=note)
    else:
        content = content.with_kind(
            "routed",
            site_id=signal.site_id,
            acknowledge_by=acknowledge_by or state.acknowledge_by,
        )
    if digest:
        now = context.clock.now()
        line = digest_line(content)  # the same line for everyone
        lines: list[HeldLine] = [
            (
                p.id,
                line,
                None if informed else context.links.claims(signal.signal_id, p.id, now),
            )
            for p in digest
        ]
        await uow.hold_digest_items(
            signal.study_id, lines, signal.signal_id, envelope.time, item="routed"
        )
    purpose = f"routed-{signal.site_id}"
    return await plan_deliveries(
        uow, deliveries_for(now_people, content, purpose, context), context
    )


async def _data_quality(
    uow: NotifierUnitOfWork,
    envelope: Envelope,
    issue: DataQualityIssueRaised,
    roster: Roster,
    context: NotifierContext,
) -> int:
    """Tell whoever the issue's route names (``DATA_QUALITY_ROUTES``): the study's medical
    monitors, or its data managers (the monitors when it has none). An issue the monitors
    must acknowledge (a result, dose or route no rule could read that may hide a critical
    value or a prohibited dose) carries their acknowledgement link and the deadline of a
    signal of unknown grade: unacknowledged, it escalates (to the monitors' backups) as a
    signal does; the other issues only inform."""
    if await notification_state(uow, envelope.id) is not None:
        return 0  # told before (the issue's own id names its notification)
    # the subject's site when the audit log knows it (an unknown subject has none): the
    # notification is then scoped to that site, as a signal's is (who may acknowledge it,
    # whose inbox shows it, the zone its times are told in)
    site_id = await uow.subject_site(issue.study_id, issue.subject_id)
    content = content_for_data_quality(issue, envelope.id).model_copy(update={"site_id": site_id})
    route = route_of(issue)
    hours: float | None = None
    acknowledge_by = None
    if route.acknowledged:
        hours = context.deadlines.hours_for(serious=False, grade=None)
        acknowledge_by = envelope.time + timedelta(hours=hours)
        content = content.model_copy(update={"acknowledge_by": acknowledge_by})
    people = data_quality_recipients(roster, route)
    opened = NotificationOpened(
        study_id=issue.study_id,
        subject_id=issue.subject_id,
        signal_id=envelope.id,
        site_id=site_id,
        kind="data-quality",
        severity="data-quality",
        serious=False,
        grade=None,
        raised_at=envelope.time,
        recipients=tuple(recipient(p) for p in people),
        acknowledge_by=acknowledge_by,
        deadline_hours=hours,
        message=content.model_dump(mode="json"),
    )
    (appended,) = await uow.record([opened], causation_id=envelope.id)
    if not appended.new:
        return 0
    return await plan_deliveries(
        uow, deliveries_for(people, content, "data-quality", context), context
    )
