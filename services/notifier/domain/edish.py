"""eDISH (evaluation of drug-induced serious hepatotoxicity): per subject, the peak ALT or
AST as a multiple of its laboratory's ULN against the peak total bilirubin as a multiple
of its ULN, placed in the FDA eDISH quadrants (pure).

Peaks are each the maximum over the study of current results (a superseded or retracted
report does not count), taken independently, so the two need not be concurrent: each point
says how many days apart its peaks were. A censored value counts as its number. The
multiple is the result's value over its laboratory's ``reference_high``, both as reported
(as the rules service reads it); a result without one is divided by the Hy's law rule's
fallback ULN for that analyte (and the subject's sex) when the pack defines one, as the
rules judge it, and said so; else it is set aside, and the subject's row says how many were.

A point is highlighted as a Hy's law case when a Hy's law signal stands, or when its peaks
are in the potential Hy's law quadrant and concurrent (within the rule's window); the
quadrant itself stays where eDISH draws it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from services.notifier.domain.protocol_limits import FallbackUln
from services.notifier.domain.subject_chart import Recorded, Standing, standings
from shared.analytes import Analyte, UnitNotConvertible, analyte_for
from shared.events import LabResultReported, LabResultSuperseded

#: the FDA eDISH reference lines
TRANSAMINASE_LINE = Decimal(3)
BILIRUBIN_LINE = Decimal(2)
NORMAL = "Normal range"
HYPERBILIRUBINEMIA = "Hyperbilirubinemia"
TEMPLES_COROLLARY = "Temple's corollary"
POTENTIAL_HYS_LAW = "Potential Hy's law"
QUADRANTS = (POTENTIAL_HYS_LAW, HYPERBILIRUBINEMIA, TEMPLES_COROLLARY, NORMAL)


@dataclass(frozen=True)
class Peak:
    """The highest multiple of ULN of one analyte (or of ALT and AST together)."""

    analyte: str
    multiple: Decimal
    collected_at: datetime
    event_id: uuid.UUID
    fallback: bool = False  # divided by the pack's fallback ULN (the laboratory sent none)
    set_aside: int = 0  # results of the analyte(s) with no ULN at all, left out


@dataclass(frozen=True)
class EdishPoint:
    subject_id: str
    site_id: str | None
    transaminase: Peak
    bilirubin: Peak
    hys_law_signal: bool  # a Hy's law signal of the rule pack stands for the subject
    window_days: int | None = None  # the Hy's law rule's "close in time"; None: not known

    @property
    def quadrant(self) -> str:
        return quadrant(self.transaminase.multiple, self.bilirubin.multiple)

    @property
    def concurrent(self) -> bool:
        """Whether the peaks are close enough in time for Hy's law (unknown window: yes)."""
        return self.window_days is None or self.days_apart <= self.window_days

    @property
    def highlighted(self) -> bool:
        """A Hy's law case: a standing signal, or peaks in the quadrant and concurrent."""
        return self.hys_law_signal or (self.quadrant == POTENTIAL_HYS_LAW and self.concurrent)

    @property
    def days_apart(self) -> int:
        delta = self.transaminase.collected_at - self.bilirubin.collected_at
        return abs(round(delta.total_seconds() / 86400))


@dataclass(frozen=True)
class NotPlottable:
    subject_id: str
    site_id: str | None
    reason: str
    hys_law_signal: bool = False  # a Hy's law signal stands although eDISH cannot place her


def quadrant(transaminase: Decimal, bilirubin: Decimal) -> str:
    """The eDISH quadrant: above the lines is strictly above (> 3 x ULN, > 2 x ULN), as
    the Hy's law criteria read."""
    high_enzyme, high_bilirubin = transaminase > TRANSAMINASE_LINE, bilirubin > BILIRUBIN_LINE
    if high_enzyme and high_bilirubin:
        return POTENTIAL_HYS_LAW
    if high_bilirubin:
        return HYPERBILIRUBINEMIA
    if high_enzyme:
        return TEMPLES_COROLLARY
    return NORMAL


def _uln(
    result: LabResultReported,
    analyte: Analyte,
    fallbacks: Mapping[str, FallbackUln],
    sex: str | None,
) -> tuple[Decimal | None, Decimal | None, bool]:
    """The result's value and the ULN to divide it by, in one unit, and whether the ULN is
    the pack's fallback; (None, None, False) when there is none."""
    if result.value is None:
        return None, None, False
    high = result.reference_high
    if high is not None and high > 0:
        return result.value, high, False
    fallback = fallbacks.get(analyte.name)
    limit = fallback.for_sex(sex) if fallback is not None else None
    if fallback is None or limit is None or limit <= 0:
        return None, None, False
    if fallback.unit in (None, result.unit):
        return result.value, limit, True
    try:
        value = analyte.to_canonical(result.value, result.unit or "")
        limit = analyte.to_canonical(limit, fallback.unit)
    except UnitNotConvertible:
        return None, None, False
    return value, limit, True


def peak(
    results: Iterable[Recorded],
    analytes: tuple[str, ...],
    fallbacks: Mapping[str, FallbackUln] | None = None,
    sex: str | None = None,
) -> tuple[Peak | None, int]:
    """The highest multiple of ULN among current results of ``analytes`` (the pack's
    fallback ULN standing in for a missing laboratory one), and how many of their results
    had no ULN at all to divide by."""
    best: Peak | None = None
    missing = 0
    for recorded in results:
        result = recorded.result
        analyte = analyte_for(result.loinc_code or "")
        if analyte is None or analyte.name not in analytes or result.value is None:
            continue
        value, high, fallback = _uln(result, analyte, fallbacks or {}, sex)
        if value is None or high is None:
            missing += 1
            continue
        multiple = value / high
        if best is None or multiple > best.multiple:
            best = Peak(analyte.name, multiple, result.collected_at, recorded.event_id, fallback)
    if best is not None and missing:
        best = replace(best, set_aside=missing)
    return best, missing


def edish_point(
    subject_id: str,
    site_id: str | None,
    results: Iterable[Recorded],
    supersessions: Iterable[LabResultSuperseded],
    hys_law_signal: bool,
    *,
    fallbacks: Mapping[str, FallbackUln] | None = None,
    sex: str | None = None,
    window_days: int | None = None,
) -> EdishPoint | NotPlottable:
    """One subject on the plot, or why they cannot be."""
    listed = list(results)
    standing = standings(listed, supersessions)
    current = [r for r in listed if standing[r.event_id] is Standing.CURRENT]
    enzyme, enzyme_missing = peak(current, ("ALT", "AST"), fallbacks, sex)
    bilirubin, bilirubin_missing = peak(current, ("total bilirubin",), fallbacks, sex)
    reasons = []
    if enzyme is None:
        reasons.append(
            f"ALT/AST: {enzyme_missing} result(s) without a ULN (the laboratory's or the pack's)"
            if enzyme_missing
            else "no ALT or AST result"
        )
    if bilirubin is None:
        reasons.append(
            f"total bilirubin: {bilirubin_missing} result(s) without a ULN"
            " (the laboratory's or the pack's)"
            if bilirubin_missing
            else "no total bilirubin result"
        )
    if enzyme is None or bilirubin is None:
        return NotPlottable(subject_id, site_id, "; ".join(reasons), hys_law_signal)
    return EdishPoint(subject_id, site_id, enzyme, bilirubin, hys_law_signal, window_days)


def edish(
    subjects: Mapping[str, tuple[str | None, list[Recorded], list[LabResultSuperseded], bool]],
    *,
    fallbacks: Mapping[str, FallbackUln] | None = None,
    sexes: Mapping[str, str | None] | None = None,
    window_days: int | None = None,
) -> tuple[list[EdishPoint], list[NotPlottable]]:
    """Every subject placed or set aside, highlighted cases first, then by subject (those
    set aside with a standing Hy's law signal first too)."""
    points: list[EdishPoint] = []
    left_out: list[NotPlottable] = []
    for subject_id, (site_id, results, supersessions, signal) in sorted(subjects.items()):
        placed = edish_point(
            subject_id,
            site_id,
            results,
            supersessions,
            signal,
            fallbacks=fallbacks,
            sex=(sexes or {}).get(subject_id),
            window_days=window_days,
        )
        (points if isinstance(placed, EdishPoint) else left_out).append(placed)  # type: ignore[arg-type]
    points.sort(key=lambda p: (not p.highlighted, p.subject_id))
    left_out.sort(key=lambda s: (not s.hys_law_signal, s.subject_id))
    return points, left_out
