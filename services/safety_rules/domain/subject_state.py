"""A subject's state as the log tells it: demographics, baseline, latest values, open signals.

Pure. The state document (a JSON-ready dict) keeps only the latest and the baseline value
per analyte, not every result: those are entries kept beside it (one per measurement), so
a batch costs what its events cost, not what the subject's history costs. Results are
ordered by collection time, then event id, not by arrival, so a late result that is older
than the latest one does not replace it.

Most events move the document on their own (:func:`apply_events`). Two cannot: removing
the entry that is the latest or the baseline, and a new Day 0. Then the caller hands all
the subject's entries to :func:`rederive`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from shared.events import (
    LabResultReported,
    LabResultSuperseded,
    ResultStatus,
    SafetySignalAmended,
    SafetySignalEscalated,
    SafetySignalRaised,
    SafetySignalReopened,
    SafetySignalResolved,
    SafetySignalRetracted,
    SubjectEnrolled,
)

State = dict[str, Any]
# One measurement: value, unit, qualitative, collected_at (ISO text) and event_id.
Entry = dict[str, Any]

_SIGNAL_UPDATES = frozenset(
    cls.event_type
    for cls in (
        SafetySignalEscalated,
        SafetySignalAmended,
        SafetySignalResolved,
        SafetySignalReopened,
        SafetySignalRetracted,
    )
)
# The event types that can change a subject's state; every other type changes nothing.
USED_TYPES = frozenset(
    {
        SubjectEnrolled.event_type,
        LabResultReported.event_type,
        LabResultSuperseded.event_type,
        SafetySignalRaised.event_type,
    }
    | _SIGNAL_UPDATES
)


def empty_state(study_id: str, subject_id: str) -> State:
    return {
        "study_id": study_id,
        "subject_id": subject_id,
        "enrolled": False,
        "site_id": None,
        "sex": None,
        "birth_date": None,
        "weight_kg": None,
        "day0": None,
        "baseline": {},
        "latest": {},
        "open_signals": [],
        "closed_signals": {},
    }


@dataclass
class SubjectChange:
    """What some events do to one subject: the new document, the entries they add and
    remove, and whether the latest and baseline values must be re-derived from all the
    subject's entries (after those additions and removals) with :func:`rederive`."""

    state: State
    added: dict[str, tuple[str, Entry]] = field(default_factory=dict)  # event id: analyte
    removed: set[str] = field(default_factory=set)
    rederive: bool = False
    applied: bool = False  # at least one event was of a type the state uses


def apply_events(state: State, events: Iterable[tuple[str, dict[str, Any], str]]) -> SubjectChange:
    """The change several events (type, payload, event id) make to a subject's state.

    The input state is not modified; when no event is used the change carries it as is."""
    new = {
        **state,
        "latest": dict(state["latest"]),
        "baseline": dict(state["baseline"]),
        "open_signals": list(state["open_signals"]),
    }
    change = SubjectChange(new)
    for event_type, payload, event_id in events:
        change.applied = _apply(change, event_type, payload, event_id) or change.applied
    if not change.applied:
        change.state = state
    return change


def rederive(state: State, entries: Iterable[tuple[str, Entry]]) -> State:
    """The state with its latest and baseline values taken from all the subject's
    entries (analyte, entry): the latest by collection time, and the baseline, the last
    value on or before Day 0."""
    new = {**state, "latest": {}, "baseline": {}}
    day0 = _day0(new)
    for analyte, entry in entries:
        _take(new, analyte, entry, day0)
    return new


def _apply(change: SubjectChange, event_type: str, payload: dict[str, Any], event_id: str) -> bool:
    new = change.state
    if event_type == SubjectEnrolled.event_type:
        day0 = payload.get("day0")
        change.rederive = change.rederive or day0 != new["day0"]
        new.update(
            enrolled=True,
            site_id=payload["site_id"],
            sex=payload["sex"],
            birth_date=payload["birth_date"],
            weight_kg=payload.get("weight_kg"),
            day0=day0,
        )
    elif event_type == LabResultReported.event_type:
        if not ResultStatus(payload.get("result_status", "F")).is_measurement:
            return False
        entry = {
            "value": payload.get("value"),
            "unit": payload.get("unit"),
            "qualitative": payload.get("qualitative"),
            "collected_at": payload["collected_at"],
            "event_id": event_id,
        }
        analyte = payload.get("loinc_code") or f"local:{payload.get('local_code')}"
        change.added[event_id] = (analyte, entry)
        change.removed.discard(event_id)
        if not change.rederive:  # a re-derivation will see this entry anyway
            _take(new, analyte, entry, _day0(new))
    elif event_type == LabResultSuperseded.event_type:
        gone = str(payload["superseded_event_id"])
        change.added.pop(gone, None)
        change.removed.add(gone)
        held = (*new["latest"].values(), *new["baseline"].values())
        change.rederive = change.rederive or any(item["event_id"] == gone for item in held)
    elif event_type == SafetySignalRaised.event_type:
        new["open_signals"].append(
            {
                "signal_id": payload["signal_id"],
                "rule_id": payload["rule_id"],
                "grade": payload.get("grade"),
                "value": payload.get("observed_value"),
                "unit": payload.get("observed_unit"),
                "comparator": payload.get("observed_comparator"),
                "collected_at": payload["collected_at"],
            }
        )
    elif event_type in _SIGNAL_UPDATES:
        _update_signal(new, event_type, payload)
    else:
        return False
    return True


def _take(state: State, analyte: str, entry: Entry, day0: date | None) -> None:
    """Let one entry replace the latest value, and the baseline when it is on or before
    Day 0, where it orders after the value held."""
    order = _order(entry)
    latest = state["latest"].get(analyte)
    if latest is None or _order(latest) < order:
        state["latest"][analyte] = entry
    if day0 is not None and order[0].date() <= day0:
        baseline = state["baseline"].get(analyte)
        if baseline is None or _order(baseline) < order:
            state["baseline"][analyte] = entry


def _update_signal(state: State, event_type: str, payload: dict[str, Any]) -> None:
    """Keep open signals current: grades move, resolved and retracted ones close, and a
    reopened one (kept aside in ``closed_signals``) comes back."""
    signal_id = payload["signal_id"]
    closed = state.setdefault("closed_signals", {})
    state["closed_signals"] = closed = dict(closed)
    if event_type == SafetySignalReopened.event_type:
        if signal_id in closed:
            state["open_signals"].append(closed.pop(signal_id))
        return
    for index, signal in enumerate(state["open_signals"]):
        if signal["signal_id"] != signal_id:
            continue
        if event_type in (SafetySignalEscalated.event_type, SafetySignalAmended.event_type):
            state["open_signals"][index] = {**signal, "grade": payload.get("grade")}
        else:
            closed[signal_id] = state["open_signals"].pop(index)
        return


def _order(item: Entry) -> tuple[datetime, str]:
    return (datetime.fromisoformat(item["collected_at"]), item["event_id"])


def _day0(state: State) -> date | None:
    return date.fromisoformat(state["day0"]) if state["day0"] else None
