"""An Observation's effective[x] as one collection moment, partial dates included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from services.ingest.domain.fhir_mapping import observation_event
from shared.events import LabResultReported
from tests.unit.test_fhir_mapping import observation

PLUS8 = timezone(timedelta(hours=8))


def reported(**effective: Any) -> LabResultReported:
    resource = observation(**effective)
    del resource["effectiveDateTime"]
    resource.update(effective)
    event, issues = observation_event(resource, study_id="S", zone=PLUS8)
    assert isinstance(event, LabResultReported), issues
    return event


def collected(**effective: Any) -> datetime | None:
    return reported(**effective).collected_at


@pytest.mark.parametrize(
    ("sent", "taken"),
    [
        ("2026", datetime(2026, 1, 1, tzinfo=PLUS8)),
        ("2026-11", datetime(2026, 11, 1, tzinfo=PLUS8)),
        ("2026-11-03", datetime(2026, 11, 3, tzinfo=PLUS8)),
        ("2026-11-03T10:15:00Z", datetime(2026, 11, 3, 10, 15, tzinfo=UTC)),
    ],
)
def test_a_partial_date_is_the_first_moment_of_the_period_it_names(
    sent: str, taken: datetime
) -> None:
    assert collected(effectiveDateTime=sent) == taken


@pytest.mark.parametrize(
    ("effective", "precision"),
    [
        ({"effectiveDateTime": "2026"}, "year"),
        ({"effectiveDateTime": "2026-11"}, "month"),
        ({"effectiveDateTime": "2026-11-03"}, "day"),
        ({"effectiveDateTime": "2026-11-03T10:15:00Z"}, None),
        ({"effectiveInstant": "2026-11-03T10:15:00Z"}, None),
        ({"effectivePeriod": {"start": "2026-11", "end": "2026-11-03T08:00:00Z"}}, "month"),
        ({"effectivePeriod": {"end": "2026-11-03"}}, "day"),
    ],
)
def test_the_event_says_how_precisely_the_sender_dated_the_collection(
    effective: dict[str, Any], precision: str | None
) -> None:
    """A partial date is not a midnight: the event keeps the precision it was sent with."""
    assert reported(**effective).collected_precision == precision


def test_an_instant_is_taken_as_sent() -> None:
    taken = collected(effectiveInstant="2026-11-03T10:15:00.250+01:00")
    assert taken == datetime(2026, 11, 3, 9, 15, 0, 250000, tzinfo=UTC)


def test_a_period_is_dated_by_its_start_when_it_has_one() -> None:
    period = {"start": "2026-11-02T08:00:00Z", "end": "2026-11-03T08:00:00Z"}
    assert collected(effectivePeriod=period) == datetime(2026, 11, 2, 8, tzinfo=UTC)


def test_a_period_with_only_an_end_is_dated_by_its_end() -> None:
    period = {"end": "2026-11-03T08:00:00Z"}
    assert collected(effectivePeriod=period) == datetime(2026, 11, 3, 8, tzinfo=UTC)


@pytest.mark.parametrize("effective", [{}, {"effectivePeriod": {"id": "p"}}])
def test_no_collection_time_names_effective_x_and_what_is_taken(
    effective: dict[str, Any],
) -> None:
    resource = observation()
    del resource["effectiveDateTime"]
    resource.update(effective)
    event, issues = observation_event(resource, study_id="S", zone=UTC)
    assert event is None
    assert [(i.code, i.expression) for i in issues] == [("required", "Observation.effective[x]")]
    assert "effectivePeriod" in issues[0].diagnostics
