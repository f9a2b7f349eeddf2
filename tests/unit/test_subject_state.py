"""The subject-state projection's pure logic."""

from __future__ import annotations

from typing import Any

from services.safety_rules.domain.subject_state import apply_event, empty_state
from shared.events import LabResultReported, SafetySignalRaised, SubjectEnrolled


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


def play(*events: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    state = empty_state("S", "1")
    for number, (event_type, payload) in enumerate(events):
        state = apply_event(state, event_type, payload, f"e{number}")
    return state


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
    state = play(
        (LAB, hb(10.1, "2026-03-30T08:00:00+00:00")),
        (LAB, hb(12.0, "2026-02-15T09:00:00+00:00")),  # arrives late
    )
    assert state["latest"]["718-7"]["value"] == 10.1


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


def test_signals_are_open() -> None:
    signal = {
        "signal_id": "sig-1",
        "rule_id": "anaemia-hb-le-9",
        "observed_value": 8.1,
        "observed_unit": "g/dL",
        "collected_at": "2026-03-30T08:00:00+00:00",
    }
    state = play((SafetySignalRaised.event_type, signal))
    assert [s["signal_id"] for s in state["open_signals"]] == ["sig-1"]


def test_apply_does_not_mutate_its_input() -> None:
    before = play((LAB, hb(10.1, "2026-03-30T08:00:00+00:00")))
    snapshot = repr(before)
    apply_event(before, LAB, hb(9.0, "2026-04-30T08:00:00+00:00"), "x")
    assert repr(before) == snapshot


def test_a_superseded_result_leaves_the_state() -> None:
    first = hb(8.1, "2026-03-30T08:00:00+00:00")
    corrected = {**hb(12.1, "2026-03-30T08:00:00+00:00", status="C"), "source_message_id": "c"}
    state = play(
        (LAB, first),
        (LAB, corrected),
        (
            "org.vigil.lab_result.superseded.v1",
            {"superseded_event_id": "e0", "superseding_event_id": "e1"},
        ),
    )
    assert [item["value"] for item in state["results"]["718-7"]] == [12.1]
    assert state["latest"]["718-7"]["value"] == 12.1
