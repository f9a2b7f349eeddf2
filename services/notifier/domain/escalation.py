"""Escalation timers, derived from a notification stream's events (pure).

A notification is due when its ``acknowledge_by`` has passed and it was neither
acknowledged (by a link, by a signed assessment in the workspace, or for a
data-quality issue by its review in the workspace's queue), resolved nor
withdrawn. A reopened signal counts as never acknowledged: its
clock runs again from the reopening, and escalation goes on from the level it had reached.
The escalation event's id derives from the signal and the level, so a restarted notifier,
or a second instance, that finds the same due timer records the same event once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.notifier.domain.messages import MessageContent
from services.notifier.domain.planning import escalation_chain, recipient
from services.notifier.domain.roster import Person, Roster
from shared.events import EventPayload
from shared.events.notifications import (
    AssessmentSigned,
    DataQualityIssueAcknowledged,
    NotificationEscalated,
    NotificationOpened,
    NotificationReissued,
    NotificationReopened,
    NotificationResolved,
    NotificationRouted,
    NotificationWithdrawn,
    SignalAcknowledged,
)
from shared.events.payloads import EVENT_ID_NAMESPACE


@dataclass
class NotificationState:
    """What the notification stream of one signal says now."""

    opened: NotificationOpened
    level: int = 0
    acknowledge_by: datetime | None = None
    told: set[str] = field(default_factory=set)
    acknowledged_by: list[str] = field(default_factory=list)
    # the links (token ids) whose acknowledgements stand: a reopening sets them aside
    acknowledged_tokens: set[str] = field(default_factory=set)
    # the signed assessments (workspace) that stand: a reopening sets them aside too
    signatures: list[AssessmentSigned] = field(default_factory=list)
    withdrawn: bool = False
    resolved: bool = False
    # why the signal was retracted, or last resolved (told to whoever tries to acknowledge)
    withdrawn_reason: str = ""
    resolved_reason: str = ""
    resolutions: int = 0
    reopenings: int = 0
    grade: int | None = None
    #: the site the signal belongs to now: where it was opened, or routed to since
    site_id: str | None = None

    @property
    def closed(self) -> bool:
        """Acknowledged, resolved or withdrawn: no more escalation."""
        return bool(self.acknowledged_by) or self.resolved or self.withdrawn

    def due(self, now: datetime) -> bool:
        return not self.closed and self.acknowledge_by is not None and self.acknowledge_by <= now

    def content(self) -> MessageContent:
        return MessageContent.model_validate(self.opened.message).model_copy(
            update={
                "grade": self.grade,
                "acknowledge_by": self.acknowledge_by,
                "site_id": self.site_id,
            }
        )


def fold(events: Iterable[EventPayload]) -> NotificationState | None:
    """The state after a stream's events, in order; None when it was never opened."""
    state: NotificationState | None = None
    for event in events:
        if isinstance(event, NotificationOpened):
            state = NotificationState(
                opened=event,
                acknowledge_by=event.acknowledge_by,
                told={r.person_id for r in (*event.recipients, *event.digest_recipients)},
                grade=event.grade,
                site_id=event.site_id,
            )
        elif state is None:
            continue
        elif isinstance(event, NotificationEscalated):
            state.level = max(state.level, event.level)
            state.acknowledge_by = event.acknowledge_by
            state.told |= {r.person_id for r in event.recipients}
        elif isinstance(event, NotificationReissued) and event.reason == "grade-worsened":
            state.grade = event.grade
            if event.acknowledge_by is not None and (
                state.acknowledge_by is None or event.acknowledge_by < state.acknowledge_by
            ):
                state.acknowledge_by = event.acknowledge_by
        elif isinstance(event, SignalAcknowledged):
            state.acknowledged_by.append(event.person_id)
            state.acknowledged_tokens.add(event.token_id)
        elif isinstance(event, AssessmentSigned):
            # a signed assessment is the acknowledgement, signed
            state.acknowledged_by.append(event.person_id)
            state.signatures.append(event)
        elif isinstance(event, DataQualityIssueAcknowledged):
            # a data-quality issue reviewed in the queue by a person allowed to acknowledge
            state.acknowledged_by.append(event.person_id)
        elif isinstance(event, NotificationResolved):
            state.resolved = True
            state.resolved_reason = event.reason
            state.resolutions += 1
        elif isinstance(event, NotificationReopened):
            # the abnormality holds again: what was acknowledged was the episode before
            state.resolved = False
            state.reopenings += 1
            state.acknowledged_by = []
            state.acknowledged_tokens = set()
            state.signatures = []
            state.acknowledge_by = event.acknowledge_by
        elif isinstance(event, NotificationRouted):
            state.site_id = event.site_id
            state.told |= {r.person_id for r in (*event.recipients, *event.digest_recipients)}
            if event.acknowledge_by is not None:
                state.acknowledge_by = event.acknowledge_by
        elif isinstance(event, NotificationWithdrawn):
            state.withdrawn = True
            state.withdrawn_reason = event.reason
    return state


def escalation_event_id(signal_id: uuid.UUID, level: int) -> uuid.UUID:
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"notification-escalated:{signal_id}:{level}")


def escalate(
    state: NotificationState, roster: Roster
) -> tuple[NotificationEscalated, list[Person]]:
    """The next level for a due notification. With nobody left to tell the event still
    records the overdue escalation, and its ``acknowledge_by`` None stops the timer."""
    assert state.acknowledge_by is not None
    people = escalation_chain(roster, state.told)
    hours = state.opened.deadline_hours or 0.0
    next_due = state.acknowledge_by + timedelta(hours=hours) if people and hours else None
    opened = state.opened
    event = NotificationEscalated(
        study_id=opened.study_id,
        subject_id=opened.subject_id,
        signal_id=opened.signal_id,
        level=state.level + 1,
        overdue_since=state.acknowledge_by,
        recipients=tuple(recipient(p) for p in people),
        acknowledge_by=next_due,
    )
    return event, people
