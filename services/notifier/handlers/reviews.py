"""What the notifier does when a person marks a data-quality issue reviewed in the
workspace: record ``DataQualityIssueReviewed`` in the issue's stream, once per person,
and, when the issue's notification asks for an acknowledgement (a result, dose or route
no rule could read: it escalates like a signal) and the person may acknowledge it, record
``DataQualityIssueAcknowledged`` in its notification stream in the same transaction, so
that escalation stops, and cancel the escalation messages still waiting to go out.

The event ids derive from the issue and the person, so reviewing again (with the same or
another note, even two at once) records nothing more: the first review stands.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from services.notifier.domain.escalation import NotificationState
from services.notifier.domain.roster import Person
from services.notifier.handlers.context import NotifierContext, notification_state
from services.notifier.handlers.ports import NotifierUnitOfWork
from services.notifier.handlers.signatures import ESCALATION_PURPOSE_PREFIX
from shared.events import DataQualityIssueRaised
from shared.events.notifications import DataQualityIssueAcknowledged
from shared.events.payloads import EVENT_ID_NAMESPACE
from shared.events.reviews import DataQualityIssueReviewed
from shared.eventstore import EventIdConflict


def review_event_id(issue_id: uuid.UUID, person_id: str) -> uuid.UUID:
    """One review per person per issue."""
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"data-quality-reviewed:{issue_id}:{person_id}")


def acknowledgement_event_id(issue_id: uuid.UUID, person_id: str) -> uuid.UUID:
    """One acknowledgement per person per issue."""
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"data-quality-acknowledged:{issue_id}:{person_id}")


def asks_acknowledgement(state: NotificationState | None) -> bool:
    """Whether the issue's notification still waits for an acknowledgement."""
    return state is not None and state.opened.deadline_hours is not None and not state.closed


def may_acknowledge(state: NotificationState, person: Person, context: NotifierContext) -> bool:
    """Whoever may acknowledge a signal of the issue's site (its staff, the study's
    medical monitors; ``Roster.may_acknowledge``), or anyone the notification told."""
    roster = context.rosters.get(state.opened.study_id)
    if roster is None:
        return False
    return person.id in state.told or roster.may_acknowledge(person.id, state.site_id)


@dataclass(frozen=True)
class Reviewed:
    """What one review call recorded."""

    new: bool  # False: the person had reviewed the issue before; nothing was recorded
    acknowledged: bool  # the review acknowledged the issue's notification (escalation stops)


async def review_issue(
    uow: NotifierUnitOfWork,
    issue_id: uuid.UUID,
    issue: DataQualityIssueRaised,
    *,
    person: Person,
    note: str,
    context: NotifierContext,
) -> Reviewed:
    """Record the person's review of the issue (raised as event ``issue_id``), and the
    acknowledgement it makes when the issue waits for one and the person may give it.
    The caller has checked that the person may see the issue."""
    now = context.clock.now()
    event = DataQualityIssueReviewed(
        study_id=issue.study_id,
        subject_id=issue.subject_id,
        issue_id=issue_id,
        person_id=person.id,
        role=person.role.value,
        reviewed_at=now,
        note=note,
    )
    review_id = review_event_id(issue_id, person.id)
    try:
        async with uow:
            await uow.lock_notifications([issue_id])
            (appended,) = await uow.record([event], event_ids=[review_id], time=now)
            if not appended.new:
                return Reviewed(new=False, acknowledged=False)
            state = await notification_state(uow, issue_id)
            if state is None or not asks_acknowledgement(state):
                return Reviewed(new=True, acknowledged=False)
            if not may_acknowledge(state, person, context):
                return Reviewed(new=True, acknowledged=False)
            acknowledged = DataQualityIssueAcknowledged(
                study_id=issue.study_id,
                subject_id=issue.subject_id,
                signal_id=issue_id,
                person_id=person.id,
                role=person.role.value,
                acknowledged_at=now,
                review_event_id=review_id,
            )
            (recorded,) = await uow.record(
                [acknowledged],
                event_ids=[acknowledgement_event_id(issue_id, person.id)],
                causation_id=review_id,
                time=now,
            )
            if recorded.new:
                await uow.cancel_pending(issue_id, purpose_prefix=ESCALATION_PURPOSE_PREFIX)
            return Reviewed(new=True, acknowledged=recorded.new)
    except EventIdConflict:
        # reviewed before, with another note or at another time: that stands
        return Reviewed(new=False, acknowledged=False)
