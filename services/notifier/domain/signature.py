"""Signed assessments: what a signature is bound to, and when a signal can be signed (pure).

21 CFR 11.70 asks that a signature be linked to its record so that it cannot be excised,
copied or transferred. A signed assessment names the signal's raising event, its latest
event and its input events, and carries ``facts_digest``: the SHA-256 of those events'
stored hashes (the audit log's hash chain), so a changed or swapped record no longer
matches the signature.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from shared.events import (
    EventPayload,
    SafetySignalAmended,
    SafetySignalEscalated,
    SafetySignalRaised,
    SafetySignalReopened,
    SafetySignalResolved,
    SafetySignalRetracted,
)
from shared.events.notifications import Assessment
from shared.events.payloads import EVENT_ID_NAMESPACE

#: what each meaning says, as the page and the record show it (11.50(a)(3))
MEANINGS: dict[Assessment, str] = {
    "not-clinically-significant": "Not clinically significant",
    "clinically-significant": "Clinically significant",
    "sae-confirmed": "Reported as a serious adverse event (SAE)",
}


@dataclass(frozen=True)
class LoggedFact:
    """One event as the audit log holds it: where, its stored hash, and its payload."""

    event_id: uuid.UUID
    position: int
    hash: bytes
    payload: EventPayload


@dataclass(frozen=True)
class SignalFacts:
    """What a signature binds: the signal's events and the inputs it stands on now."""

    raised: LoggedFact
    latest: LoggedFact
    episode: LoggedFact
    inputs: tuple[LoggedFact, ...]
    input_event_ids: tuple[uuid.UUID, ...]
    #: the raising and every later event of the signal, in log order
    history: tuple[LoggedFact, ...] = ()

    @property
    def signal(self) -> SafetySignalRaised:
        assert isinstance(self.raised.payload, SafetySignalRaised)
        return self.raised.payload

    @property
    def missing_inputs(self) -> tuple[uuid.UUID, ...]:
        """Input events the log does not hold (nothing can be bound to them)."""
        found = {fact.event_id for fact in self.inputs}
        return tuple(i for i in self.input_event_ids if i not in found)

    @property
    def digest(self) -> str:
        return facts_digest([self.raised, self.latest, *self.inputs])

    def closed(self) -> Literal["resolved", "retracted"] | None:
        """Whether the signal's latest turn closed it (resolved or retracted)."""
        for fact in reversed(self.history):
            if isinstance(fact.payload, SafetySignalRetracted):
                return "retracted"
            if isinstance(fact.payload, SafetySignalResolved):
                return "resolved"
            if isinstance(fact.payload, SafetySignalReopened):
                return None
        return None


def facts_digest(facts: Sequence[LoggedFact]) -> str:
    """``sha256:<hex>`` of the stored hashes of ``facts`` (each once), in log position order."""
    unique = {fact.position: fact.hash for fact in facts}
    digest = hashlib.sha256(b"".join(unique[position] for position in sorted(unique)))
    return f"sha256:{digest.hexdigest()}"


def signal_facts(
    signal_events: Sequence[LoggedFact], inputs: Sequence[LoggedFact]
) -> SignalFacts | None:
    """The facts of a signal from its events (its raising first, in log order) and the
    logged input events of the latest event that names inputs; None when not raised."""
    if not signal_events or not isinstance(signal_events[0].payload, SafetySignalRaised):
        return None
    raised = signal_events[0]
    episode = raised
    for fact in signal_events:
        if isinstance(fact.payload, SafetySignalReopened):
            episode = fact
    return SignalFacts(
        raised=raised,
        latest=signal_events[-1],
        episode=episode,
        inputs=tuple(sorted(inputs, key=lambda fact: fact.position)),
        input_event_ids=current_inputs(signal_events),
        history=tuple(signal_events),
    )


def current_inputs(signal_events: Sequence[LoggedFact]) -> tuple[uuid.UUID, ...]:
    """The input events the signal stands on now: those of its latest raising, escalation
    or amendment."""
    found: tuple[uuid.UUID, ...] = ()
    for fact in signal_events:
        payload = fact.payload
        if isinstance(payload, SafetySignalRaised | SafetySignalEscalated | SafetySignalAmended):
            found = payload.input_event_ids
    return found


def signature_event_id(
    signal_id: uuid.UUID, person_id: str, episode_event_id: uuid.UUID
) -> uuid.UUID:
    """One signature per person per episode of a signal: signing again is a no-op, and a
    reopened signal (a new episode) can be signed again."""
    return uuid.uuid5(
        EVENT_ID_NAMESPACE, f"assessment-signed:{signal_id}:{person_id}:{episode_event_id}"
    )
