"""A DiagnosticReport's time dates the results it groups that carry none (pure)."""

from __future__ import annotations

from typing import Any

from services.ingest.domain.fhir_reports import dated_by_their_reports


def report(*results: str, **effective: Any) -> dict[str, Any]:
    resource = {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "result": [{"reference": name} for name in results],
        **effective,
    }
    return {"resource": resource}


def observation(full_url: str, **fields: Any) -> dict[str, Any]:
    return {"fullUrl": full_url, "resource": {"resourceType": "Observation", **fields}}


def effective(entry: dict[str, Any]) -> Any:
    resource = entry["resource"]
    return resource.get("effectiveDateTime") or resource.get("effectivePeriod")


def test_a_result_without_its_own_time_takes_its_reports() -> None:
    entries = [
        report("urn:uuid:a", "Observation/b", effectiveDateTime="2026-11-20T08:00:00Z"),
        observation("urn:uuid:a"),
        observation("https://lab.example/fhir/Observation/b", id="b"),
    ]
    dated = dated_by_their_reports(entries)
    assert [effective(e) for e in dated[1:]] == ["2026-11-20T08:00:00Z"] * 2
    assert "effectiveDateTime" not in entries[1]["resource"]  # the Bundle as sent is kept


def test_a_results_own_time_wins() -> None:
    entries = [
        report("urn:uuid:a", effectiveDateTime="2026-11-20T08:00:00Z"),
        observation("urn:uuid:a", effectiveDateTime="2026-11-19T07:00:00Z"),
    ]
    assert effective(dated_by_their_reports(entries)[1]) == "2026-11-19T07:00:00Z"


def test_two_reports_dating_one_result_differently_date_it_by_neither() -> None:
    entries = [
        report("urn:uuid:a", effectiveDateTime="2026-11-20T08:00:00Z"),
        report("urn:uuid:a", effectiveDateTime="2026-11-21T08:00:00Z"),
        observation("urn:uuid:a"),
    ]
    assert effective(dated_by_their_reports(entries)[2]) is None


def test_a_period_is_carried_as_sent_and_unnamed_results_are_left_alone() -> None:
    period = {"start": "2026-11-20T08:00:00Z"}
    entries = [report("urn:uuid:a", effectivePeriod=period), observation("urn:uuid:z")]
    dated = dated_by_their_reports(entries)
    assert dated[1] is entries[1]
    entries = [report("urn:uuid:a", effectivePeriod=period), observation("urn:uuid:a")]
    assert effective(dated_by_their_reports(entries)[1]) == period
