"""How ``vigil rules explain`` names each input fact (pure)."""

from __future__ import annotations

from shared.signal_explanation import input_summary

RESULT = {
    "loinc_code": "718-7",
    "value": "7.0",
    "unit": "g/dL",
    "result_status": "final",
    "collected_at": "2026-11-20T00:00:00+08:00",
}


def test_a_result_dated_by_day_only_says_so_rather_than_claiming_midnight() -> None:
    text = input_summary(
        "org.vigil.lab_result.reported.v1", {**RESULT, "collected_precision": "day"}
    )
    assert text.endswith("collected 2026-11-20T00:00:00+08:00 (dated to the day only)")


def test_a_result_dated_to_the_second_names_only_its_time() -> None:
    text = input_summary("org.vigil.lab_result.reported.v1", RESULT)
    assert text.endswith("collected 2026-11-20T00:00:00+08:00")
