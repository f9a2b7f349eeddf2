"""What the notifier does on each acknowledgement: check the link and the roster, and
record the clinical assessment."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from services.notifier.adapters import notification_log
from services.notifier.handlers.context import NotifierContext, notification_state
from shared.events.notifications import Assessment, SignalAcknowledged
from shared.events.payloads import EVENT_ID_NAMESPACE


class UnknownSignal(LookupError):
    """No notification was opened for this signal id."""


class NotOnRoster(PermissionError):
    """The person is not on the roster of the signal's site (nor a study medical monitor)."""


@dataclass(frozen=True)
class Acknowledgement:
    event_id: uuid.UUID
    new: bool
    person_id: str


async def acknowledge(
    connection: asyncpg.Connection,
    signal_id: uuid.UUID,
    *,
    token: str,
    assessment: Assessment,
    comment: str,
    context: NotifierContext,
    expected_person: str | None = None,
) -> Acknowledgement:
    """Record a clinical assessment by the person the token was issued to.

    Raises UnknownSignal, InvalidLink (forged, altered, expired, other signal) or
    NotOnRoster (the person is not on the roster of the signal's site)."""
    state = await notification_state(connection, signal_id)
    if state is None:
        raise UnknownSignal(f"no notification for signal {signal_id}")
    claims = context.links.verify(token, signal_id, context.clock.now())
    if expected_person is not None and expected_person != claims.person_id:
        raise NotOnRoster(f"the link was issued to another person than {expected_person!r}")
    roster = context.rosters.get(state.opened.study_id)
    person = roster.person(claims.person_id) if roster is not None else None
    if (
        roster is None
        or person is None
        or not roster.may_acknowledge(person.id, state.opened.site_id)
    ):
        raise NotOnRoster(
            f"person {claims.person_id!r} is not on the roster of site "
            f"{state.opened.site_id!r} in study {state.opened.study_id}"
        )
    event = SignalAcknowledged(
        study_id=state.opened.study_id,
        subject_id=state.opened.subject_id,
        signal_id=signal_id,
        person_id=person.id,
        role=person.role.value,
        assessment=assessment,
        comment=comment,
        token_id=claims.token_id,
    )
    # after a reopening the same assessment through the same link is a new acknowledgement,
    # not a repeat of the one the reopening set aside
    event_id = (
        uuid.uuid5(EVENT_ID_NAMESPACE, f"{event.content_id()}:reopened-{state.reopenings}")
        if state.reopenings
        else None
    )
    (appended,) = await notification_log.record(
        connection, [event], event_ids=[event_id], time=context.clock.now()
    )
    return Acknowledgement(appended.event_id, appended.new, person.id)
