"""The inbox's view of a safety signal, folded from the audit log (pure).

One row per signal: what was found (rule, grade, analyte, value), where (study, subject,
site), how urgent (the acknowledgement deadline, the escalation level reached) and where
it stands:

- ``retracted``: the signal was retracted, or its notification withdrawn (final);
- ``resolved``: its condition stopped holding, and it was not reopened since;
- ``acknowledged``: someone acknowledged it (by link, or with a signed assessment) since
  it was raised or last reopened;
- ``open``: none of these.

Sources: the ``safety_signal.*`` events of the subject streams and the ``notification.*``
events of the signal's ``notification-{signal_id}`` stream. Events about a signal the
inbox does not hold (a data-quality notice) change nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from shared.events import (
    SafetySignalAmended,
    SafetySignalEscalated,
    SafetySignalRaised,
    SafetySignalReopened,
    SafetySignalResolved,
    SafetySignalRetracted,
    SafetySignalRouted,
)
from shared.events.notifications import (
    AssessmentSigned,
    NotificationEscalated,
    NotificationOpened,
    NotificationReissued,
    NotificationReopened,
    NotificationResolved,
    NotificationRouted,
    NotificationWithdrawn,
    SignalAcknowledged,
)

InboxState = Literal["open", "acknowledged", "resolved", "retracted"]
STATES: tuple[InboxState, ...] = ("open", "acknowledged", "resolved", "retracted")

#: a signed assessment (21 CFR 11) acknowledges the signal too; matched by its type name
#: so the inbox does not depend on the class being defined
ASSESSMENT_SIGNED = AssessmentSigned.event_type
ACKNOWLEDGING = frozenset({SignalAcknowledged.event_type, ASSESSMENT_SIGNED})
_VALUE_CHANGES = frozenset({SafetySignalEscalated.event_type, SafetySignalAmended.event_type})
_RESOLVING = frozenset({SafetySignalResolved.event_type, NotificationResolved.event_type})
_REOPENING = frozenset({SafetySignalReopened.event_type, NotificationReopened.event_type})
_RETRACTING = frozenset({SafetySignalRetracted.event_type, NotificationWithdrawn.event_type})
_ROUTING = frozenset({SafetySignalRouted.event_type, NotificationRouted.event_type})
#: every event type the inbox reads
USED_TYPES = frozenset(
    {
        SafetySignalRaised.event_type,
        NotificationOpened.event_type,
        NotificationEscalated.event_type,
        NotificationReissued.event_type,
        *ACKNOWLEDGING,
        *_VALUE_CHANGES,
        *_RESOLVING,
        *_REOPENING,
        *_RETRACTING,
        *_ROUTING,
    }
)


@dataclass(frozen=True)
class InboxEvent:
    """One event of the log as the inbox reads it."""

    position: int
    type: str
    recorded_at: datetime
    payload: Mapping[str, Any]

    @property
    def signal_id(self) -> uuid.UUID | None:
        raw = self.payload.get("signal_id")
        return uuid.UUID(str(raw)) if raw is not None else None


@dataclass(frozen=True)
class InboxRow:
    """One signal in the inbox."""

    signal_id: uuid.UUID
    study_id: str
    subject_id: str
    site_id: str | None
    rule_id: str
    rule_title: str
    grade: int | None
    grading: str | None
    severity: str
    serious: bool
    analyte: str
    observed_value: str | None
    observed_unit: str | None
    observed_comparator: str | None
    collected_at: datetime
    raised_at: datetime
    acknowledge_by: datetime | None
    escalation_level: int
    acknowledged: bool
    resolved: bool
    retracted: bool
    last_change_at: datetime
    raised_position: int
    position: int

    @property
    def state(self) -> InboxState:
        if self.retracted:
            return "retracted"
        if self.resolved:
            return "resolved"
        if self.acknowledged:
            return "acknowledged"
        return "open"

    @property
    def value(self) -> str:
        """The observed value as a person reads it: ``< 0.5 10*9/L``; empty when none."""
        if self.observed_value is None:
            return ""
        parts = [self.observed_comparator or "", self.observed_value, self.observed_unit or ""]
        return " ".join(part for part in parts if part)


def _time(raw: object) -> datetime | None:
    return None if raw is None else datetime.fromisoformat(str(raw))


def _text(raw: object) -> str | None:
    return None if raw is None else str(raw)


def _raised(event: InboxEvent) -> InboxRow:
    p = event.payload
    signal_id = event.signal_id
    assert signal_id is not None
    collected = _time(p["collected_at"])
    assert collected is not None
    return InboxRow(
        signal_id=signal_id,
        study_id=str(p["study_id"]),
        subject_id=str(p["subject_id"]),
        site_id=_text(p.get("site_id")),
        rule_id=str(p["rule_id"]),
        rule_title=str(p.get("rule_title") or p["rule_id"]),
        grade=p.get("grade"),
        grading=_text(p.get("grading")),
        severity=str(p.get("severity") or "protocol-threshold"),
        serious=bool(p.get("serious")),
        analyte=str(p.get("analyte") or ""),
        observed_value=_text(p.get("observed_value")),
        observed_unit=_text(p.get("observed_unit")),
        observed_comparator=_text(p.get("observed_comparator")),
        collected_at=collected,
        raised_at=event.recorded_at,
        acknowledge_by=None,
        escalation_level=0,
        acknowledged=False,
        resolved=False,
        retracted=False,
        last_change_at=event.recorded_at,
        raised_position=event.position,
        position=event.position,
    )


def _changed(row: InboxRow, event: InboxEvent) -> InboxRow:
    """What ``event`` changes of an existing row (the row itself when nothing)."""
    p, kind = event.payload, event.type
    if kind in _VALUE_CHANGES:
        collected = _time(p.get("collected_at"))
        return replace(
            row,
            grade=p.get("grade"),
            observed_value=_text(p.get("observed_value")),
            observed_unit=_text(p.get("observed_unit")),
            observed_comparator=_text(p.get("observed_comparator")),
            collected_at=collected or row.collected_at,
        )
    if kind in _ROUTING:
        deadline = _time(p.get("acknowledge_by"))
        return replace(
            row, site_id=_text(p.get("site_id")), acknowledge_by=deadline or row.acknowledge_by
        )
    if kind == NotificationOpened.event_type:
        return replace(row, acknowledge_by=_time(p.get("acknowledge_by")), escalation_level=0)
    if kind == NotificationEscalated.event_type:
        # after the last level the clock stops: the deadline missed stays the one shown
        deadline = _time(p.get("acknowledge_by")) or _time(p.get("overdue_since"))
        level = max(row.escalation_level, int(p.get("level") or 0))
        return replace(row, escalation_level=level, acknowledge_by=deadline)
    if kind == NotificationReissued.event_type:
        deadline = _time(p.get("acknowledge_by"))
        if p.get("reason") != "grade-worsened" or deadline is None:
            return row
        if row.acknowledge_by is not None and row.acknowledge_by <= deadline:
            return row
        return replace(row, acknowledge_by=deadline)
    if kind in ACKNOWLEDGING:
        return replace(row, acknowledged=True)
    if kind in _RESOLVING:
        return replace(row, resolved=True)
    if kind in _REOPENING:
        # what was acknowledged was the episode before: the clock runs again
        deadline = _time(p.get("acknowledge_by"))
        return replace(
            row,
            resolved=False,
            acknowledged=False,
            acknowledge_by=deadline
            if kind == NotificationReopened.event_type
            else row.acknowledge_by,
        )
    if kind in _RETRACTING:
        return replace(row, retracted=True)
    return row


def apply(row: InboxRow | None, event: InboxEvent) -> InboxRow | None:
    """The row after one more event of its signal (None: the inbox holds no such signal)."""
    if event.type == SafetySignalRaised.event_type:
        return row if row is not None else _raised(event)
    if row is None or event.type not in USED_TYPES:
        return row
    changed = _changed(row, event)
    return replace(changed, last_change_at=event.recorded_at, position=event.position)


def fold(
    rows: Mapping[uuid.UUID, InboxRow], events: Iterable[InboxEvent]
) -> dict[uuid.UUID, InboxRow]:
    """The rows ``events`` (in log order) touch, after them; rows they leave unchanged
    are not returned."""
    touched: dict[uuid.UUID, InboxRow] = {}
    for event in events:
        signal_id = event.signal_id
        if event.type not in USED_TYPES or signal_id is None:
            continue
        before = touched.get(signal_id, rows.get(signal_id))
        after = apply(before, event)
        if after is not None and after != before:
            touched[signal_id] = after
    return touched
