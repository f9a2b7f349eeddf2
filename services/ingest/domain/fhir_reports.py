"""A lab report's time for the results it groups (pure).

A FHIR lab report Bundle often dates the report, not each result: its DiagnosticReport
carries ``effective[x]`` and lists its Observations in ``result``, which carry none
(hl7.fhir.r4.examples Bundle-101, Bundle-lipids). R4 defines DiagnosticReport.effective as
the clinically relevant time of the report, for specimens "typically the time of specimen
collection", so an Observation without its own ``effective[x]`` is dated by the one
report in the Bundle that names it. Its own time always wins; a result two reports date
differently is dated by neither (and refused for having no time, as before).
"""

from __future__ import annotations

from typing import Any

from services.ingest.domain.fhir_subjects import entry_names

_EFFECTIVE = ("effectiveDateTime", "effectiveInstant", "effectivePeriod")


def _resource(entry: Any) -> dict[str, Any] | None:
    resource = entry.get("resource") if isinstance(entry, dict) else None
    return resource if isinstance(resource, dict) else None


def _report_times(entries: list[Any]) -> dict[str, dict[str, Any]]:
    """Each result reference of the Bundle's reports, with its report's effective[x]."""
    times: dict[str, dict[str, Any]] = {}
    ambiguous: set[str] = set()
    for entry in entries:
        report = _resource(entry)
        if report is None or report.get("resourceType") != "DiagnosticReport":
            continue
        effective = {key: report[key] for key in _EFFECTIVE if key in report}
        results = report.get("result")
        if len(effective) != 1 or not isinstance(results, list):
            continue
        for reference in results:
            name = reference.get("reference") if isinstance(reference, dict) else None
            if not isinstance(name, str) or not name:
                continue
            if name in times and times[name] != effective:
                ambiguous.add(name)
            times[name] = effective
    return {name: time for name, time in times.items() if name not in ambiguous}


def dated_by_their_reports(entries: list[Any]) -> list[Any]:
    """The entries, each Observation without ``effective[x]`` given the time of the
    report that names it (by the entry's fullUrl or ``Observation/<id>``); every other
    entry is the very object it was. The Bundle as sent stays with its receipt."""
    times = _report_times(entries)
    if not times:
        return entries
    dated = []
    for entry in entries:
        observation = _resource(entry)
        if (
            observation is not None
            and observation.get("resourceType") == "Observation"
            and not any(key in observation for key in _EFFECTIVE)
        ):
            names = entry_names(entry, observation)
            found = [times[name] for name in names if name in times]
            if found and all(time == found[0] for time in found):
                entry = {**entry, "resource": {**observation, **found[0]}}
        dated.append(entry)
    return dated
