"""A subject's state as the log tells it: demographics, baseline, latest values, open signals.

Pure: a state document (JSON-ready dict) and one stored event in, the new document out.
Results are ordered by collection time, not arrival, so a late result that is older than
the latest one does not replace it.
"""

from __future__ import annotations

from collections.abc import Iterable
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
        "results": {},
        "baseline": {},
        "latest": {},
        "open_signals": [],
        "closed_signals": {},
    }


def _copy(state: State) -> State:
    new = {**state, "results": {k: list(v) for k, v in state["results"].items()}}
    new["open_signals"] = list(state["open_signals"])
    return new


def apply_event(state: State, event_type: str, payload: dict[str, Any], event_id: str) -> State:
    """The state after one event; event types the projection does not use change nothing."""
    return apply_events(state, [(event_type, payload, event_id)])


def apply_events(state: State, events: Iterable[tuple[str, dict[str, Any], str]]) -> State:
    """The state after several events: copied once and derived once, so a batch costs what
    its events cost, not what the subject's whole history costs per event."""
    new = _copy(state)
    changed = False
    for event_type, payload, event_id in events:
        changed = _apply(new, event_type, payload, event_id) or changed
    return _derive(new) if changed else state


def _apply(new: State, event_type: str, payload: dict[str, Any], event_id: str) -> bool:
    if event_type == SubjectEnrolled.event_type:
        new.update(
            enrolled=True,
            site_id=payload["site_id"],
            sex=payload["sex"],
            birth_date=payload["birth_date"],
            weight_kg=payload.get("weight_kg"),
            day0=payload.get("day0"),
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
        history = new["results"].setdefault(analyte, [])
        history.append(entry)
        if len(history) > 1 and _order(history[-2]) > _order(entry):
            history.sort(key=_order)  # a late result: put it where it belongs
    elif event_type == LabResultSuperseded.event_type:
        gone = payload["superseded_event_id"]
        new["results"] = {
            loinc: [item for item in history if item["event_id"] != gone]
            for loinc, history in new["results"].items()
        }
        new["results"] = {loinc: h for loinc, h in new["results"].items() if h}
    elif event_type == SafetySignalRaised.event_type:
        new["open_signals"].append(
            {
                "signal_id": payload["signal_id"],
                "rule_id": payload["rule_id"],
                "grade": payload.get("grade"),
                "value": payload.get("observed_value"),
                "unit": payload.get("observed_unit"),
                "collected_at": payload["collected_at"],
            }
        )
    elif event_type in _SIGNAL_UPDATES:
        _update_signal(new, event_type, payload)
    else:
        return False
    return True


_SIGNAL_UPDATES = {
    cls.event_type
    for cls in (
        SafetySignalEscalated,
        SafetySignalAmended,
        SafetySignalResolved,
        SafetySignalReopened,
        SafetySignalRetracted,
    )
}


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


def _order(item: dict[str, Any]) -> tuple[datetime, str]:
    return (_moment(item["collected_at"]), item["event_id"])


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _derive(state: State) -> State:
    """Latest value per analyte, and baseline: the last value on or before Day 0."""
    day0 = date.fromisoformat(state["day0"]) if state["day0"] else None
    latest, baseline = {}, {}
    for loinc, history in state["results"].items():
        latest[loinc] = history[-1]
        if day0 is not None:
            before = [item for item in history if _moment(item["collected_at"]).date() <= day0]
            if before:
                baseline[loinc] = before[-1]
    state["latest"] = latest
    state["baseline"] = baseline
    return state
