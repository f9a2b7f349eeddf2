"""A subject's record laid out on study time, ready to draw (pure): per analyte its results
with their standing (current, corrected, retracted), the baseline, the protocol thresholds
and CTCAE bands as values; the study-drug doses, other medications and adverse events on
the same axis.

Study time is days from Day 0 (``day0`` of the enrolment) at the subject's site; without a
Day 0 the axis starts at the subject's first record and says so.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

from services.notifier.domain.lab_values import (
    analyte_name,
    in_unit,
    plotted_value,
    series_unit,
    shown_range,
    shown_value,
    thresholds_in,
)
from services.notifier.domain.protocol_limits import (
    AnalyteLimits,
    Reference,
    Region,
    grade_of,
    grade_regions,
    threshold_value,
)
from shared.events import (
    AdverseEventReported,
    LabResultReported,
    LabResultSuperseded,
    MedicationRecorded,
    SubjectEnrolled,
)


class Standing(StrEnum):
    """What became of a reported result."""

    CURRENT = "current"
    CORRECTED = "superseded by a correction"
    UPDATED = "superseded by a later report"
    LATE = "superseded: arrived after the report that replaced it"
    RETRACTED = "retracted"
    RETRACTION = "retraction report (no value)"

    @property
    def superseded(self) -> bool:
        return self not in (Standing.CURRENT, Standing.RETRACTION)


_BY_REASON = {
    "corrected": Standing.CORRECTED,
    "retracted": Standing.RETRACTED,
    "updated": Standing.UPDATED,
    "late": Standing.LATE,
}


@dataclass(frozen=True)
class Recorded:
    """A lab result with the id the audit log holds it under."""

    event_id: uuid.UUID
    result: LabResultReported


@dataclass(frozen=True)
class SubjectFacts:
    """What the audit log holds about one subject, in log order."""

    enrolment: SubjectEnrolled | None
    results: tuple[Recorded, ...] = ()
    supersessions: tuple[LabResultSuperseded, ...] = ()
    adverse_events: tuple[AdverseEventReported, ...] = ()
    medications: tuple[MedicationRecorded, ...] = ()


@dataclass(frozen=True)
class ChartPoint:
    """One reported result on the chart and in its table."""

    event_id: uuid.UUID
    collected_at: datetime
    study_day: int
    x: float  # study days, with the time of day as a fraction
    value: Decimal | None  # in the series' unit; None: not drawable
    shown: str  # as it reads, in ``shown_unit``: '<0.5', '12.1', 'positive'
    shown_unit: str  # the unit ``shown`` is in: the series' when it converts, else reported
    shown_range: str  # the laboratory's range as it reads: '7 to 40', '3.4 to 20.5 umol/L'
    reference: Reference
    standing: Standing
    status: str  # HL7 OBX-11 result status
    regions: tuple[Region, ...] = ()
    grade: int | None = None
    thresholds: tuple[Decimal | None, ...] = ()  # one per series threshold
    is_baseline: bool = False

    @property
    def dated(self) -> str:
        """The date the result's timestamp carries, in the offset the laboratory sent it
        with: the date the baseline is judged on (as the rules service judges it), which
        may differ from the study day at the site near midnight."""
        offset = self.collected_at.strftime("%z") or "+0000"
        return f"{self.collected_at.date()} (UTC{offset[:3]}:{offset[3:]})"


@dataclass(frozen=True)
class AnalyteSeries:
    analyte: str
    unit: str | None
    limits: AnalyteLimits  # thresholds in ``unit``
    points: tuple[ChartPoint, ...]

    @property
    def baseline(self) -> ChartPoint | None:
        return next((p for p in self.points if p.is_baseline), None)

    @property
    def drawable(self) -> tuple[ChartPoint, ...]:
        return tuple(p for p in self.points if p.value is not None)


@dataclass(frozen=True)
class Span:
    """A medication or adverse event on the time axis (``end`` None: ongoing or a dose)."""

    label: str
    start: float
    end: float | None
    start_at: datetime
    end_at: datetime | None
    start_day: int  # whole study days at the site
    serious: bool = False
    detail: str = ""


@dataclass(frozen=True)
class SubjectChart:
    day0: date | None
    origin: date  # the date x = 0 stands for
    zone: ZoneInfo
    series: tuple[AnalyteSeries, ...]
    doses: tuple[Span, ...]
    medications: tuple[Span, ...]
    adverse_events: tuple[Span, ...]

    @property
    def x_range(self) -> tuple[float, float]:
        xs = [0.0]
        xs += [p.x for s in self.series for p in s.points]
        xs += [span.start for span in (*self.doses, *self.medications, *self.adverse_events)]
        xs += [s.end for s in (*self.medications, *self.adverse_events) if s.end is not None]
        low, high = min(xs), max(xs)
        pad = max((high - low) * 0.04, 1.0)
        return low - pad, high + pad


def standings(
    results: Iterable[Recorded], supersessions: Iterable[LabResultSuperseded]
) -> dict[uuid.UUID, Standing]:
    """Each result's standing: what a later report made of it (the supersession events
    say, by reason), else a retraction report itself (status X, D or W), else current."""
    said = {s.superseded_event_id: _BY_REASON[s.reason] for s in supersessions}
    return {
        r.event_id: said.get(r.event_id)
        or (Standing.CURRENT if r.result.result_status.is_measurement else Standing.RETRACTION)
        for r in results
    }


def study_day(moment: datetime, origin: date, zone: ZoneInfo) -> tuple[int, float]:
    """Whole study days from ``origin`` at the site, and the same with the time of day."""
    local = moment.astimezone(zone)
    day = (local.date() - origin).days
    fraction = (local.hour * 3600 + local.minute * 60 + local.second) / 86400
    return day, day + fraction


def baseline_of(
    points: Sequence[tuple[Recorded, Decimal | None, Standing]], day0: date | None
) -> uuid.UUID | None:
    """The baseline: the last current measured value collected on or before Day 0 (the
    collection date as reported, as the rules service reads it); None without a Day 0."""
    if day0 is None:
        return None
    before = [
        (recorded.result.collected_at, recorded.event_id)
        for recorded, value, standing in points
        if standing is Standing.CURRENT
        and value is not None
        and recorded.result.collected_at.date() <= day0
    ]
    return max(before)[1] if before else None


def build_series(
    analyte: str,
    recorded: Sequence[Recorded],
    limits: AnalyteLimits,
    standing: dict[uuid.UUID, Standing],
    day0: date | None,
    origin: date,
    zone: ZoneInfo,
) -> AnalyteSeries:
    """One analyte's points with their bands, thresholds, grade and baseline."""
    # by clinical time; reports of one sample in the order the log holds them
    ordered = [
        r for _, r in sorted(enumerate(recorded), key=lambda p: (p[1].result.collected_at, p[0]))
    ]
    unit = series_unit([r.result for r in ordered])
    limits = thresholds_in(limits, unit)
    valued = [(r, plotted_value(r.result, unit), standing[r.event_id]) for r in ordered]
    baseline_id = baseline_of(valued, day0)
    base = next((v for r, v, _ in valued if r.event_id == baseline_id), None)
    base_high = next(
        (
            in_unit(r.result.reference_high, r.result, unit)
            for r, _, _ in valued
            if r.event_id == baseline_id
        ),
        None,
    )
    points = []
    for item, value, item_standing in valued:
        result = item.result
        reference = Reference(
            low=in_unit(result.reference_low, result, unit),
            high=in_unit(result.reference_high, result, unit),
            baseline=None if item.event_id == baseline_id else base,
            baseline_high=base_high,
        )
        regions = grade_regions(limits.grading, reference) if limits.grading else ()
        day, x = study_day(result.collected_at, origin, zone)
        shown, shown_unit = shown_value(result, unit)
        points.append(
            ChartPoint(
                event_id=item.event_id,
                collected_at=result.collected_at,
                study_day=day,
                x=x,
                value=value,
                shown=shown,
                shown_unit=shown_unit,
                shown_range=shown_range(result, unit),
                reference=reference,
                standing=item_standing,
                status=result.result_status.value,
                regions=regions,
                grade=(
                    grade_of(limits.grading, reference, value, result.comparator)
                    if value is not None and limits.grading is not None
                    else None
                ),
                thresholds=tuple(threshold_value(t, reference) for t in limits.thresholds),
                is_baseline=item.event_id == baseline_id,
            )
        )
    return AnalyteSeries(analyte, unit, limits, tuple(points))


def _span(
    label: str,
    start: datetime,
    end: datetime | None,
    origin: date,
    zone: ZoneInfo,
    *,
    serious: bool = False,
    detail: str = "",
) -> Span:
    end_x = study_day(end, origin, zone)[1] if end is not None else None
    day, x = study_day(start, origin, zone)
    return Span(label, x, end_x, start, end, day, serious, detail)


def subject_chart(
    facts: SubjectFacts, limits_of: Callable[[str], AnalyteLimits], zone: ZoneInfo
) -> SubjectChart:
    """The subject's record laid out for its charts and tables."""
    day0 = facts.enrolment.day0 if facts.enrolment is not None else None
    moments = [r.result.collected_at for r in facts.results]
    moments += [m.start for m in facts.medications] + [a.onset for a in facts.adverse_events]
    origin = day0 or min((m.astimezone(zone).date() for m in moments), default=date(1970, 1, 1))
    standing = standings(facts.results, facts.supersessions)
    by_analyte: dict[str, list[Recorded]] = {}
    for recorded in facts.results:
        by_analyte.setdefault(analyte_name(recorded.result), []).append(recorded)
    series = tuple(
        build_series(name, items, limits_of(name), standing, day0, origin, zone)
        for name, items in sorted(by_analyte.items(), key=lambda pair: pair[0].casefold())
    )
    doses, medications = [], []
    for med in sorted(facts.medications, key=lambda m: m.start):
        text = f"{med.drug} {med.dose.normalize():f} {med.dose_unit} {med.route}"
        if med.category == "study-drug":
            doses.append(_span(med.drug, med.start, None, origin, zone, detail=text))
        else:
            medications.append(_span(med.drug, med.start, med.stop, origin, zone, detail=text))
    latest: dict[str, AdverseEventReported] = {}
    for event in facts.adverse_events:  # a new report of an AE id updates it
        latest[event.ae_id] = event
    adverse_events = [
        _span(
            event.term,
            event.onset,
            event.end,
            origin,
            zone,
            serious=event.serious,
            detail=", ".join(
                part
                for part in (
                    "serious" if event.serious else "not serious",
                    f"CTCAE grade {event.ctcae_grade}" if event.ctcae_grade else "",
                    event.severity or "",
                    f"outcome {event.outcome}",
                )
                if part
            ),
        )
        for event in sorted(latest.values(), key=lambda e: e.onset)
    ]
    return SubjectChart(
        day0, origin, zone, series, tuple(doses), tuple(medications), tuple(adverse_events)
    )
