"""The subject-state projection's pure logic."""

from __future__ import annotations

from typing import Any

import pytest

from services.safety_rules.domain.subject_state import (
    Entry,
    State,
    apply_events,
    empty_state,
    rederive,
)
from shared.events import (
    LabResultReported,
    LabResultSuperseded,
    SafetySignalRaised,
    SafetySignalReopened,
    SafetySignalResolved,
    SubjectEnrolled,
)


def enrolled(day0: str | None = "2026-03-02") -> dict[str, Any]:
    return {
        "study_id": "S",
        "subject_id": "1",
        "site_id": "A",
        "sex": "F",
        "birth_date": "1980-01-01",
        "weight_kg": 60,
        "day0": day0,
    }


def hb(value: float, when: str, status: str = "F") -> dict[str, Any]:
    return {
        "study_id": "S",
        "subject_id": "1",
        "loinc_code": "718-7",
        "value": value,
        "unit": "g/dL",
        "collected_at": when,
        "result_status": status,
        "source_message_id": when,
    }


class Subject:
    """A subject's document and its entries, moved as the projection moves them: each
    batch folded, its entries added and removed, then re-derived when the fold asks."""

    def __init__(self) -> None:
        self.state: State = empty_state("S", "1")
        self.entries: dict[str, tuple[str, Entry]] = {}
        self.rederived = 0

    def batch(self, events: list[tuple[str, dict[str, Any], str]]) -> None:
        change = apply_events(self.state, events)
        self.entries.update(change.added)
        for event_id in change.removed:
            self.entries.pop(event_id, None)
        self.state = change.state
        if change.rederive:
            self.state = rederive(self.state, self.entries.values())
            self.rederived += 1


def numbered(*events: tuple[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any], str]]:
    return [(event_type, payload, f"e{n}") for n, (event_type, payload) in enumerate(events)]


def play_subject(*events: tuple[str, dict[str, Any]]) -> Subject:
    """The subject after the events one by one; the same events in one batch, and the
    entries re-derived from scratch, give the same."""
    one_by_one, at_once = Subject(), Subject()
    for event in numbered(*events):
        one_by_one.batch([event])
    at_once.batch(numbered(*events))
    assert at_once.state == one_by_one.state
    assert at_once.entries == one_by_one.entries
    assert rederive(one_by_one.state, one_by_one.entries.values()) == one_by_one.state
    return one_by_one


def play(*events: tuple[str, dict[str, Any]]) -> State:
    return play_subject(*events).state


def superseded(event_id: str) -> tuple[str, dict[str, Any]]:
    return (
        LabResultSuperseded.event_type,
        {"superseded_event_id": event_id, "superseding_event_id": "later"},
    )


LAB = LabResultReported.event_type
ENROLLED = SubjectEnrolled.event_type


def test_demographics_from_enrolment() -> None:
    state = play((ENROLLED, enrolled()))
    assert state["enrolled"] is True
    assert (state["site_id"], state["sex"], state["weight_kg"]) == ("A", "F", 60)


def test_baseline_is_the_last_value_on_or_before_day0() -> None:
    state = play(
        (ENROLLED, enrolled("2026-03-02")),
        (LAB, hb(12.0, "2026-02-15T09:00:00+00:00")),  # screening
        (LAB, hb(12.4, "2026-03-02T08:00:00+00:00")),  # Day 0
        (LAB, hb(10.1, "2026-03-30T08:00:00+00:00")),  # week 4
    )
    assert state["baseline"]["718-7"]["value"] == 12.4
    assert state["latest"]["718-7"]["value"] == 10.1


def test_late_older_result_does_not_replace_the_latest() -> None:
    subject = play_subject(
        (LAB, hb(10.1, "2026-03-30T08:00:00+00:00")),
        (LAB, hb(12.0, "2026-02-15T09:00:00+00:00")),  # arrives late
    )
    assert subject.state["latest"]["718-7"]["value"] == 10.1
    assert sorted(entry["value"] for _, entry in subject.entries.values()) == [10.1, 12.0]
    assert subject.rederived == 0


def test_day0_known_after_the_results_still_gives_a_baseline() -> None:
    state = play(
        (LAB, hb(12.0, "2026-02-15T09:00:00+00:00")),
        (LAB, hb(10.1, "2026-03-30T08:00:00+00:00")),
        (ENROLLED, enrolled("2026-03-02")),
    )
    assert state["baseline"]["718-7"]["value"] == 12.0


def test_results_that_are_not_values_are_ignored() -> None:
    state = play((LAB, hb(1.0, "2026-02-15T09:00:00+00:00", status="X")))
    assert state["latest"] == {}


SIGNAL = {
    "signal_id": "sig-1",
    "rule_id": "anaemia-hb-le-9",
    "observed_value": 8.1,
    "observed_unit": "g/dL",
    "collected_at": "2026-03-30T08:00:00+00:00",
}


def test_signals_are_open() -> None:
    state = play((SafetySignalRaised.event_type, SIGNAL))
    assert [s["signal_id"] for s in state["open_signals"]] == ["sig-1"]


def test_signals_close_and_reopen() -> None:
    raised = (SafetySignalRaised.event_type, SIGNAL)
    resolved = (SafetySignalResolved.event_type, {"signal_id": "sig-1"})
    reopened = (SafetySignalReopened.event_type, {"signal_id": "sig-1"})
    closed = play(raised, resolved)
    assert closed["open_signals"] == []
    assert list(closed["closed_signals"]) == ["sig-1"]
    again = play(raised, resolved, reopened)
    assert [s["signal_id"] for s in again["open_signals"]] == ["sig-1"]
    assert again["closed_signals"] == {}


def test_the_document_keeps_no_history_the_entries_do() -> None:
    subject = play_subject(
        (LAB, hb(12.0, "2026-02-15T09:00:00+00:00")),
        (LAB, hb(10.1, "2026-03-30T08:00:00+00:00")),
        (LAB, hb(1.0, "2026-04-01T08:00:00+00:00", status="X")),  # not a value: no entry
    )
    assert "results" not in subject.state
    assert subject.entries == {
        "e0": ("718-7", subject.entries["e0"][1]),
        "e1": ("718-7", subject.state["latest"]["718-7"]),
    }
    assert subject.entries["e0"][1]["value"] == 12.0


def test_apply_does_not_mutate_its_input() -> None:
    before = play((ENROLLED, enrolled()), (LAB, hb(10.1, "2026-03-01T08:00:00+00:00")))
    snapshot = repr(before)
    apply_events(
        before,
        [
            (LAB, hb(9.0, "2026-03-02T08:00:00+00:00"), "x"),
            (
                SafetySignalRaised.event_type,
                {"signal_id": "s", "rule_id": "r", "collected_at": "2026-03-02T08:00:00+00:00"},
                "y",
            ),
        ],
    )
    assert repr(before) == snapshot


def test_events_the_state_does_not_use_change_nothing() -> None:
    before = play((LAB, hb(10.1, "2026-03-30T08:00:00+00:00")))
    change = apply_events(before, [("org.vigil.data_quality.issue_raised.v1", {}, "x")])
    assert change.state is before
    assert not change.applied
    assert (change.added, change.removed, change.rederive) == ({}, set(), False)


def test_a_superseded_result_leaves_the_state() -> None:
    first = hb(8.1, "2026-03-30T08:00:00+00:00")
    corrected = {**hb(12.1, "2026-03-30T08:00:00+00:00", status="C"), "source_message_id": "c"}
    subject = play_subject((LAB, first), (LAB, corrected), superseded("e0"))
    assert [entry["value"] for _, entry in subject.entries.values()] == [12.1]
    assert subject.state["latest"]["718-7"]["value"] == 12.1
    assert subject.rederived == 0  # e0 was neither the latest nor the baseline


def test_superseding_the_latest_rederives_it_from_the_remaining_results() -> None:
    subject = play_subject(
        (LAB, hb(12.0, "2026-02-15T09:00:00+00:00")),
        (LAB, hb(10.1, "2026-03-30T08:00:00+00:00")),
        (LAB, hb(11.0, "2026-03-10T08:00:00+00:00")),  # late, older than the latest
        superseded("e1"),
    )
    assert subject.state["latest"]["718-7"]["value"] == 11.0
    assert subject.rederived == 1


def test_superseding_the_only_result_leaves_no_latest_value() -> None:
    state = play((LAB, hb(10.1, "2026-03-30T08:00:00+00:00")), superseded("e0"))
    assert state["latest"] == {}


def test_superseding_the_baseline_rederives_it() -> None:
    subject = play_subject(
        (ENROLLED, enrolled("2026-03-02")),
        (LAB, hb(12.0, "2026-02-15T09:00:00+00:00")),
        (LAB, hb(12.4, "2026-03-02T08:00:00+00:00")),
        (LAB, hb(10.1, "2026-03-30T08:00:00+00:00")),
        superseded("e2"),
    )
    assert subject.state["baseline"]["718-7"]["value"] == 12.0
    assert subject.state["latest"]["718-7"]["value"] == 10.1
    assert subject.rederived == 2  # the enrolment set Day 0, then the supersession


@pytest.mark.parametrize(("day0", "baseline"), [("2026-03-02", 12.4), ("2026-02-20", 12.0)])
def test_a_new_day0_rederives_the_baseline(day0: str, baseline: float) -> None:
    state = play(
        (ENROLLED, enrolled("2026-03-02")),
        (LAB, hb(12.0, "2026-02-15T09:00:00+00:00")),
        (LAB, hb(12.4, "2026-03-02T08:00:00+00:00")),
        (ENROLLED, enrolled(day0)),
    )
    assert state["baseline"]["718-7"]["value"] == baseline


def test_an_enrolment_without_day0_has_no_baseline() -> None:
    state = play(
        (ENROLLED, enrolled("2026-03-02")),
        (LAB, hb(12.0, "2026-02-15T09:00:00+00:00")),
        (ENROLLED, enrolled(None)),
    )
    assert state["baseline"] == {}
    assert state["latest"]["718-7"]["value"] == 12.0


def test_a_result_after_day0_leaves_the_baseline_alone() -> None:
    subject = play_subject(
        (ENROLLED, enrolled("2026-03-02")),
        (LAB, hb(12.4, "2026-03-02T23:00:00+00:00")),  # still Day 0
        (LAB, hb(10.1, "2026-03-03T00:00:00+00:00")),
        (LAB, hb(12.0, "2026-02-15T09:00:00+00:00")),  # late, before the baseline
    )
    assert subject.state["baseline"]["718-7"]["value"] == 12.4
    assert subject.state["latest"]["718-7"]["value"] == 10.1
