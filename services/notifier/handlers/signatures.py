"""What the notifier does when a person signs their assessment of a signal in the
workspace: check the roster and the signal, bind the signature to the facts, record it,
and stop the escalation.

The signer was confirmed (password, and second factor) by the caller before; this records
``AssessmentSigned`` in the signal's notification stream. Its event id derives from the
signal, the person and the episode (the signal's raising or its latest reopening), so
signing again changes nothing and a reopened signal can be signed anew. The notifier's
timers read the signature as the acknowledgement (``escalation.fold``), and the
escalation messages still waiting to go out are cancelled with it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from services.notifier.domain.escalation import NotificationState
from services.notifier.domain.roster import Person
from services.notifier.domain.signature import SignalFacts, signal_facts, signature_event_id
from services.notifier.handlers.acknowledgements import (
    NotOnRoster,
    SignalClosed,
    UnknownSignal,
    closed_notification,
)
from services.notifier.handlers.context import NotifierContext, notification_state
from services.notifier.handlers.ports import NotifierUnitOfWork
from shared.events.notifications import Assessment, AssessmentSigned, SignerConfirmation
from shared.eventstore import EventIdConflict

#: the purposes of the deliveries a signature makes pointless (``escalation-<level>``)
ESCALATION_PURPOSE_PREFIX = "escalation-"


class FactsMissing(Exception):
    """The audit log lacks an input event of the signal: nothing could be bound to it."""


@dataclass(frozen=True)
class SignatureReview:
    """What the signing page shows: the notification, the facts a signature would be bound
    to, who signs, and their signature of this episode (None: not signed yet)."""

    state: NotificationState
    facts: SignalFacts
    person: Person
    own: AssessmentSigned | None

    @property
    def closed(self) -> SignalClosed | None:
        """Why the signal cannot be signed now (None: it can)."""
        if (closed := closed_notification(self.state)) is not None:
            return closed
        turned = self.facts.closed()
        if turned is not None:  # the notifier has not answered the turn yet
            return SignalClosed(turned, "")
        return None


@dataclass(frozen=True)
class Signed:
    """A signature in the audit log, and whether this call recorded it."""

    event_id: uuid.UUID
    event: AssessmentSigned
    new: bool


async def review_signature(
    uow: NotifierUnitOfWork, signal_id: uuid.UUID, *, person_id: str, context: NotifierContext
) -> SignatureReview:
    """The signal as a signer sees it, recording nothing.

    Raises UnknownSignal (no notification, or no raised signal of that id) or NotOnRoster
    (the person may not acknowledge signals of its site). One transaction of ``uow`` (a
    savepoint of the caller's)."""
    async with uow:
        state = await notification_state(uow, signal_id)
        events = await uow.signal_events(signal_id)
        if state is None or not events:
            raise UnknownSignal(f"no notification for signal {signal_id}")
        roster = context.rosters.get(state.opened.study_id)
        person = roster.person(person_id) if roster is not None else None
        if roster is None or person is None or not roster.may_acknowledge(person_id, state.site_id):
            raise NotOnRoster(
                f"person {person_id!r} may not sign for site {state.site_id!r} "
                f"in study {state.opened.study_id}"
            )
        draft = signal_facts(events, [])
        assert draft is not None  # the first event is the raising (signal_events says so)
        facts = signal_facts(events, await uow.logged_facts(draft.input_event_ids))
        assert facts is not None
        own = next(
            (
                signature
                for signature in state.signatures
                if signature.person_id == person_id
                and signature.episode_event_id == facts.episode.event_id
            ),
            None,
        )
        return SignatureReview(state, facts, person, own)


async def sign(
    uow: NotifierUnitOfWork,
    signal_id: uuid.UUID,
    *,
    person_id: str,
    meaning: Assessment,
    comment: str,
    confirmed_by: SignerConfirmation,
    context: NotifierContext,
) -> Signed:
    """Record a confirmed signer's assessment; their signature of this episode recorded
    before is returned as it is (``new`` False) and nothing else is recorded.

    Raises what :func:`review_signature` raises, SignalClosed for a retracted or resolved
    signal, and FactsMissing when an input event is not in the log."""
    async with uow:
        await uow.lock_notifications([signal_id])
        seen = await review_signature(uow, signal_id, person_id=person_id, context=context)
        if seen.own is not None:
            return Signed(_id_of(seen.own), seen.own, new=False)
        if (closed := seen.closed) is not None:
            raise closed
        facts = seen.facts
        if missing := facts.missing_inputs:
            raise FactsMissing(
                f"the audit log lacks {len(missing)} input event(s) of signal {signal_id}"
            )
        now = context.clock.now()
        event = AssessmentSigned(
            study_id=seen.state.opened.study_id,
            subject_id=seen.state.opened.subject_id,
            signal_id=signal_id,
            person_id=seen.person.id,
            role=seen.person.role.value,
            printed_name=seen.person.name,
            meaning=meaning,
            comment=comment,
            signed_at=now,
            confirmed_by=confirmed_by,
            episode_event_id=facts.episode.event_id,
            raised_event_id=facts.raised.event_id,
            raised_position=facts.raised.position,
            latest_signal_event_id=facts.latest.event_id,
            latest_signal_position=facts.latest.position,
            input_event_ids=facts.input_event_ids,
            facts_digest=facts.digest,
        )
        event_id = _id_of(event)
        try:
            async with uow:  # a savepoint: a lost race leaves the rest
                (appended,) = await uow.record([event], event_ids=[event_id], time=now)
                if appended.new:
                    await uow.cancel_pending(signal_id, purpose_prefix=ESCALATION_PURPOSE_PREFIX)
                    return Signed(event_id, event, new=True)
        except EventIdConflict:
            pass  # the same person signed this episode a moment ago: that signature stands
        again = await review_signature(uow, signal_id, person_id=person_id, context=context)
        if again.own is None:  # pragma: no cover - the append or the conflict put it there
            raise RuntimeError(f"signature {event_id} is neither recorded nor in conflict")
        return Signed(event_id, again.own, new=False)


def _id_of(signature: AssessmentSigned) -> uuid.UUID:
    return signature_event_id(signature.signal_id, signature.person_id, signature.episode_event_id)
