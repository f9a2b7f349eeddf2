"""A signal's whole story for its page (pure): what was found, the facts it rests on with
their audit-log positions, what became of it since, who was told when, and who
acknowledged or signed an assessment.

Built from what the audit log holds (the raising event, its inputs, the signal's later
events in the subject stream, its notification stream). People appear by roster id and
role; addresses never (a delivery names the person, never where it went), nor the text
of a channel's error (it may quote an address).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.notifier.domain.signal_inbox import (
    ASSESSMENT_SIGNED,
    InboxEvent,
    InboxRow,
    fold,
)
from shared.events import SafetySignalAmended, SafetySignalEscalated, SafetySignalRaised
from shared.events.notifications import (
    AssessmentSigned,
    DeliveryAttempted,
    DeliveryFailed,
    DeliveryFellBack,
    DeliverySucceeded,
    NotificationEscalated,
    NotificationOpened,
    NotificationReissued,
    NotificationRouted,
    SignalAcknowledged,
)

#: what an assessment's meaning says in words (21 CFR 11.50: the meaning of a signature)
MEANINGS = {
    "not-clinically-significant": "not clinically significant",
    "clinically-significant": "clinically significant",
    "sae-confirmed": "reported as a serious adverse event",
    "reported-as-sae": "reported as a serious adverse event",
}


def meaning_in_words(meaning: object) -> str:
    text = str(meaning or "")
    return MEANINGS.get(text, text.replace("-", " ").replace("_", " "))


@dataclass(frozen=True)
class LogEntry:
    """One event of the audit log as the story reads it."""

    position: int
    event_id: uuid.UUID
    type: str
    recorded_at: datetime
    payload: Mapping[str, Any]
    source: str = ""


@dataclass(frozen=True)
class Told:
    """People told at once: at opening (level 0), at an escalation, at a routing."""

    at: datetime
    position: int
    why: str
    level: int | None
    people: tuple[tuple[str, str], ...]  # (person id, role)
    acknowledge_by: datetime | None


@dataclass(frozen=True)
class DeliveryLine:
    """One outcome of one message to one person on one channel."""

    at: datetime
    position: int
    person_id: str
    role: str
    channel: str
    purpose: str
    outcome: str
    failed: bool


@dataclass(frozen=True)
class Acknowledgement:
    """An acknowledgement by link, or a signed assessment (``signed``)."""

    at: datetime
    position: int
    person_id: str
    role: str
    printed_name: str
    meaning: str
    signed: bool
    how_confirmed: str


@dataclass(frozen=True)
class Basis:
    """What a signal rests on now: the signal as its latest raising, escalation or
    amendment left it (grade, value, computed values, clinical time, inputs), and the
    event that last changed it (None: it stands as raised)."""

    now: SafetySignalRaised
    changed_by: LogEntry | None
    #: every input any raising, escalation or amendment of the signal named, in order
    ever: tuple[uuid.UUID, ...]


_BASIS_CHANGES: dict[str, type[SafetySignalAmended | SafetySignalEscalated]] = {
    SafetySignalAmended.event_type: SafetySignalAmended,
    SafetySignalEscalated.event_type: SafetySignalEscalated,
}


def basis(signal: SafetySignalRaised, later: Sequence[LogEntry]) -> Basis:
    """What ``signal`` rests on after its ``later`` events (any order): the latest
    escalation or amendment, in audit-log order, replaces the grade, the observed value,
    the computed values, the clinical time and the inputs it was raised with."""
    now, changed_by = signal, None
    ever = list(signal.input_event_ids)
    for entry in sorted(later, key=lambda e: e.position):
        kind = _BASIS_CHANGES.get(entry.type)
        if kind is None:
            continue
        change = kind.model_validate(dict(entry.payload))
        update: dict[str, Any] = {
            "grade": change.grade,
            "input_event_ids": change.input_event_ids,
            "computed_values": change.computed_values,
            "observed_value": change.observed_value,
            "observed_unit": change.observed_unit,
            "observed_comparator": change.observed_comparator,
            "collected_at": change.collected_at,
        }
        if isinstance(change, SafetySignalEscalated) and change.reporting_deadline is not None:
            update["reporting_deadline"] = change.reporting_deadline
        now, changed_by = now.model_copy(update=update), entry
        ever += [i for i in change.input_event_ids if i not in ever]
    return Basis(now=now, changed_by=changed_by, ever=tuple(ever))


@dataclass(frozen=True)
class SignalStory:
    """Everything the signal page shows. ``signal`` is the signal as raised; ``now`` as
    its latest escalation or amendment left it (``changed_by``: that event); ``inputs``
    are the facts it rests on now, ``superseded_inputs`` those it rested on before."""

    signal: SafetySignalRaised
    raised: LogEntry
    row: InboxRow
    inputs: tuple[LogEntry, ...]
    missing_inputs: tuple[uuid.UUID, ...]
    later: tuple[LogEntry, ...]
    told: tuple[Told, ...]
    deliveries: tuple[DeliveryLine, ...]
    acknowledgements: tuple[Acknowledgement, ...]
    now: SafetySignalRaised
    changed_by: LogEntry | None = None
    superseded_inputs: tuple[LogEntry, ...] = ()

    @property
    def site_id(self) -> str | None:
        """The site the signal belongs to now (routed since, perhaps)."""
        return self.row.site_id

    @property
    def closed(self) -> bool:
        """Resolved or retracted: nothing to assess."""
        return self.row.state in ("resolved", "retracted")


def _people(payload: Mapping[str, Any], key: str = "recipients") -> tuple[tuple[str, str], ...]:
    return tuple((str(r["person_id"]), str(r["role"])) for r in payload.get(key) or ())


def _when(raw: object) -> datetime | None:
    return None if raw is None else datetime.fromisoformat(str(raw))


def _told(entry: LogEntry) -> Told | None:
    p = entry.payload
    deadline = _when(p.get("acknowledge_by"))
    if entry.type == NotificationOpened.event_type:
        people = _people(p) + _people(p, "digest_recipients")
        return Told(entry.recorded_at, entry.position, "first told", 0, people, deadline)
    if entry.type == NotificationEscalated.event_type:
        level = int(p.get("level") or 0)
        why = "nobody acknowledged in time: escalated"
        return Told(entry.recorded_at, entry.position, why, level, _people(p), deadline)
    if entry.type == NotificationRouted.event_type:
        why = f"the subject became known at site {p.get('site_id')}"
        people = _people(p) + _people(p, "digest_recipients")
        return Told(entry.recorded_at, entry.position, why, None, people, deadline)
    if entry.type == NotificationReissued.event_type:
        why = "told again: " + str(p.get("reason") or "").replace("-", " ")
        return Told(entry.recorded_at, entry.position, why, None, (), deadline)
    return None


def _deliveries(entries: Sequence[LogEntry], roles: Mapping[str, str]) -> list[DeliveryLine]:
    outcomes = {
        (str(e.payload.get("delivery_id")), e.payload.get("attempt"))
        for e in entries
        if e.type in (DeliverySucceeded.event_type, DeliveryFailed.event_type)
    }
    lines = []
    for e in entries:
        p = e.payload
        attempt = p.get("attempt")
        if e.type == DeliverySucceeded.event_type:
            outcome, failed = f"sent (attempt {attempt})", False
        elif e.type == DeliveryFailed.event_type:
            retry = _when(p.get("retry_at"))
            outcome = f"failed (attempt {attempt}); " + (
                "to be tried again" if retry is not None else "given up on this channel"
            )
            failed = True
        elif e.type == DeliveryFellBack.event_type:
            to = p.get("to_person_id")
            outcome = (
                f"fell back to {to} by {p.get('to_channel')}"
                if to is not None
                else "fell back: nobody left to try"
            )
            failed = True
        elif e.type == DeliveryAttempted.event_type:
            if (str(p.get("delivery_id")), attempt) in outcomes:
                continue
            outcome, failed = f"attempt {attempt} begun, no outcome recorded", True
        else:
            continue
        person = str(p.get("person_id"))
        lines.append(
            DeliveryLine(
                at=e.recorded_at,
                position=e.position,
                person_id=person,
                role=roles.get(person, "not on the roster now"),
                channel=str(p.get("channel")),
                purpose=str(p.get("purpose") or "").replace("-", " "),
                outcome=outcome,
                failed=failed,
            )
        )
    return lines


def _acknowledgement(entry: LogEntry, roles: Mapping[str, str]) -> Acknowledgement | None:
    p = entry.payload
    if entry.type == SignalAcknowledged.event_type:
        person = str(p.get("person_id"))
        return Acknowledgement(
            at=entry.recorded_at,
            position=entry.position,
            person_id=person,
            role=str(p.get("role") or roles.get(person, "")),
            printed_name="",
            meaning=meaning_in_words(p.get("assessment")),
            signed=False,
            how_confirmed="acknowledgement link",
        )
    if entry.type == ASSESSMENT_SIGNED:
        signed = AssessmentSigned.model_validate(p)
        return Acknowledgement(
            at=signed.signed_at,
            position=entry.position,
            person_id=signed.person_id,
            role=signed.role,
            printed_name=signed.printed_name,
            meaning=meaning_in_words(signed.meaning),
            signed=True,
            how_confirmed=signed.confirmed_by,
        )
    return None


def tell(
    signal: SafetySignalRaised,
    raised: LogEntry,
    inputs: Sequence[LogEntry],
    later: Sequence[LogEntry],
    notifications: Sequence[LogEntry],
    roster_roles: Mapping[str, str],
) -> SignalStory:
    """The story of ``signal``, raised by the event ``raised``; ``inputs`` are the logged
    events of every input the signal ever named (see :func:`basis`), split here into
    those it rests on now and those superseded. ``roster_roles`` (person id to role)
    names the role of a person a delivery went to when no recipient list does."""
    roles = dict(roster_roles)
    for entry in notifications:
        for key in ("recipients", "digest_recipients"):
            roles.update(dict(_people(entry.payload, key)))
    events = sorted([raised, *later, *notifications], key=lambda e: e.position)
    rows = fold({}, [InboxEvent(e.position, e.type, e.recorded_at, {**e.payload}) for e in events])
    rests_on = basis(signal, later)
    current = set(rests_on.now.input_event_ids)
    found = {entry.event_id for entry in inputs}
    told = [t for e in notifications if (t := _told(e)) is not None]
    acknowledgements = [a for e in notifications if (a := _acknowledgement(e, roles)) is not None]
    by_position = sorted(inputs, key=lambda e: e.position)
    return SignalStory(
        signal=signal,
        raised=raised,
        row=rows[signal.signal_id],
        inputs=tuple(e for e in by_position if e.event_id in current),
        missing_inputs=tuple(i for i in rests_on.now.input_event_ids if i not in found),
        later=tuple(sorted(later, key=lambda e: e.position)),
        told=tuple(told),
        deliveries=tuple(_deliveries(notifications, roles)),
        acknowledgements=tuple(acknowledgements),
        now=rests_on.now,
        changed_by=rests_on.changed_by,
        superseded_inputs=tuple(e for e in by_position if e.event_id not in current),
    )
