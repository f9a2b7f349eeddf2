"""What the notifier does on each acknowledgement: check the link and the roster, and
record the clinical assessment, once per link.

Each link records one assessment. The acknowledgement's event id derives from the signal
and the token's id, so the first use records it and any later use (the same or another
assessment, through the API or the page, even two at once) finds that record and records
nothing. A reopened signal is acknowledged through the fresh link its reopening alert
carries. A retracted or resolved signal has nothing to acknowledge, and says why.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from services.notifier.domain.escalation import NotificationState
from services.notifier.domain.links import VerifiedLink
from services.notifier.domain.roster import Person
from services.notifier.handlers.context import NotifierContext, notification_state
from services.notifier.handlers.ports import NotifierUnitOfWork
from shared.events.notifications import Assessment, SignalAcknowledged
from shared.events.payloads import EVENT_ID_NAMESPACE
from shared.eventstore import EventIdConflict


class UnknownSignal(LookupError):
    """No notification was opened for this signal id."""


class NotOnRoster(PermissionError):
    """The person is not on the roster of the signal's site (nor a study medical monitor)."""


class SignalClosed(Exception):
    """The signal was retracted or resolved: there is nothing to acknowledge."""

    def __init__(self, status: Literal["retracted", "resolved"], reason: str) -> None:
        super().__init__(
            f"the signal was {status} ({reason or 'no reason given'}): there is nothing "
            "to acknowledge"
        )
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Acknowledgement:
    """An assessment recorded in the audit log, and whether this request recorded it."""

    event_id: uuid.UUID
    new: bool
    person_id: str
    role: str
    assessment: Assessment
    comment: str
    recorded_at: datetime
    stands: bool = True  # False: the signal was reopened after it, and needs a new one


@dataclass(frozen=True)
class LinkReview:
    """What a genuine link opens: the notification, who acknowledges, and what this link
    recorded already (None: it was not used yet)."""

    state: NotificationState
    person: Person
    link: VerifiedLink
    recorded: Acknowledgement | None

    @property
    def closed(self) -> SignalClosed | None:
        """Why the signal cannot be acknowledged now (None: it can)."""
        return closed_notification(self.state)


def closed_notification(state: NotificationState) -> SignalClosed | None:
    """Why a notification's signal can be neither acknowledged nor signed now (None: it
    can): the notifier recorded it retracted or resolved."""
    if state.withdrawn:
        return SignalClosed("retracted", state.withdrawn_reason)
    if state.resolved:
        return SignalClosed("resolved", state.resolved_reason)
    return None


def acknowledgement_event_id(signal_id: uuid.UUID, token_id: str) -> uuid.UUID:
    """One acknowledgement per link: the same token always names the same event."""
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"acknowledged:{signal_id}:{token_id}")


async def _recorded(
    uow: NotifierUnitOfWork,
    event_id: uuid.UUID,
    state: NotificationState,
    *,
    new: bool = False,
) -> Acknowledgement | None:
    found = await uow.acknowledgement(event_id)
    if found is None:
        return None
    event, recorded_at = found
    return Acknowledgement(
        event_id,
        new,
        event.person_id,
        event.role,
        event.assessment,
        event.comment,
        recorded_at,
        stands=new or event.token_id in state.acknowledged_tokens,
    )


async def review(
    uow: NotifierUnitOfWork,
    signal_id: uuid.UUID,
    *,
    token: str,
    context: NotifierContext,
    expected_person: str | None = None,
) -> LinkReview:
    """Check a link without recording anything (what the page shows before a POST).

    Raises UnknownSignal, InvalidLink (forged, altered, expired, other signal, unknown
    key) or NotOnRoster (the person is not on the roster of the signal's site). One
    transaction of ``uow`` (a savepoint in the caller's, when it entered ``uow``)."""
    async with uow:
        state = await notification_state(uow, signal_id)
        if state is None:
            raise UnknownSignal(f"no notification for signal {signal_id}")
        link = context.links.verify(token, signal_id, context.clock.now())
        if expected_person is not None and expected_person != link.person_id:
            raise NotOnRoster(f"the link was issued to another person than {expected_person!r}")
        roster = context.rosters.get(state.opened.study_id)
        person = roster.person(link.person_id) if roster is not None else None
        if roster is None or person is None or not roster.may_acknowledge(person.id, state.site_id):
            raise NotOnRoster(
                f"person {link.person_id!r} is not on the roster of site "
                f"{state.site_id!r} in study {state.opened.study_id}"
            )
        event_id = acknowledgement_event_id(signal_id, link.token_id)
        recorded = await _recorded(uow, event_id, state)
        return LinkReview(state, person, link, recorded)


async def acknowledge(
    uow: NotifierUnitOfWork,
    signal_id: uuid.UUID,
    *,
    token: str,
    assessment: Assessment,
    comment: str,
    context: NotifierContext,
    expected_person: str | None = None,
) -> Acknowledgement:
    """Record a clinical assessment by the person the token was issued to; a link used
    before returns what it recorded then (``new`` False) and records nothing.

    Raises what :func:`review` raises, and SignalClosed for a retracted or resolved
    signal. One transaction of ``uow``, as for :func:`review`."""
    async with uow:
        seen = await review(
            uow, signal_id, token=token, context=context, expected_person=expected_person
        )
        if seen.recorded is not None:
            return seen.recorded
        if (closed := seen.closed) is not None:
            raise closed
        event = SignalAcknowledged(
            study_id=seen.state.opened.study_id,
            subject_id=seen.state.opened.subject_id,
            signal_id=signal_id,
            person_id=seen.person.id,
            role=seen.person.role.value,
            assessment=assessment,
            comment=comment,
            token_id=seen.link.token_id,
        )
        event_id = acknowledgement_event_id(signal_id, seen.link.token_id)
        new = False
        try:
            async with uow:  # a savepoint: a lost race leaves the rest
                (appended,) = await uow.record(
                    [event], event_ids=[event_id], time=context.clock.now()
                )
                new = appended.new
        except EventIdConflict:
            pass  # the same link recorded another assessment a moment ago: that one stands
        # a lost race: the state read before it does not hold the winner's acknowledgement
        state = seen.state if new else await notification_state(uow, signal_id)
        recorded = await _recorded(uow, event_id, state or seen.state, new=new)
        if recorded is None:  # pragma: no cover - the append or the conflict put it there
            raise RuntimeError(f"acknowledgement {event_id} is neither recorded nor in conflict")
        return recorded
