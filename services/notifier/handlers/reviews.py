"""What the notifier does when a person marks a data-quality issue reviewed in the
workspace: record ``DataQualityIssueReviewed`` in the issue's stream, once per person.

The event id derives from the issue and the person, so reviewing again (with the same or
another note, even two at once) records nothing more: the first review stands.
"""

from __future__ import annotations

import uuid

from services.notifier.domain.roster import Person
from services.notifier.handlers.context import NotifierContext
from services.notifier.handlers.ports import NotifierUnitOfWork
from shared.events import DataQualityIssueRaised
from shared.events.payloads import EVENT_ID_NAMESPACE
from shared.events.reviews import DataQualityIssueReviewed
from shared.eventstore import EventIdConflict


def review_event_id(issue_id: uuid.UUID, person_id: str) -> uuid.UUID:
    """One review per person per issue."""
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"data-quality-reviewed:{issue_id}:{person_id}")


async def review_issue(
    uow: NotifierUnitOfWork,
    issue_id: uuid.UUID,
    issue: DataQualityIssueRaised,
    *,
    person: Person,
    note: str,
    context: NotifierContext,
) -> bool:
    """Record the person's review of the issue (raised as event ``issue_id``); returns
    whether this call recorded it (False: they had reviewed it already). The caller has
    checked that the person may see the issue."""
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
    try:
        async with uow:
            (appended,) = await uow.record(
                [event], event_ids=[review_event_id(issue_id, person.id)], time=now
            )
    except EventIdConflict:
        return False  # reviewed before, with another note or at another time: that stands
    return appended.new
