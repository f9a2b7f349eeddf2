"""eDISH (evaluation of drug-induced serious hepatotoxicity): per subject, the peak ALT or
AST as a multiple of its laboratory's ULN against the peak total bilirubin as a multiple
of its ULN, placed in the FDA eDISH quadrants (pure).

Peaks are each the maximum over the study of current results (a superseded or retracted
report does not count), taken independently, so the two need not be concurrent: each point
says how many days apart its peaks were. A censored value counts as its number. The
multiple is the result's value over its laboratory's ``reference_high``, both as reported
(as the rules service reads it); a result without one is not plottable.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from services.notifier.domain.subject_chart import Recorded, Standing, standings
from shared.analytes import analyte_for
from shared.events import LabResultSuperseded

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


@dataclass(frozen=True)
class EdishPoint:
    subject_id: str
    site_id: str | None
    transaminase: Peak
    bilirubin: Peak
    hys_law_signal: bool  # a Hy's law signal of the rule pack stands for the subject

    @property
    def quadrant(self) -> str:
        return quadrant(self.transaminase.multiple, self.bilirubin.multiple)

    @property
    def highlighted(self) -> bool:
        return self.quadrant == POTENTIAL_HYS_LAW or self.hys_law_signal

    @property
    def days_apart(self) -> int:
        delta = self.transaminase.collected_at - self.bilirubin.collected_at
        return abs(round(delta.total_seconds() / 86400))


@dataclass(frozen=True)
class NotPlottable:
    subject_id: str
    site_id: str | None
    reason: str


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


def peak(results: Iterable[Recorded], analytes: tuple[str, ...]) -> tuple[Peak | None, int]:
    """The highest multiple of ULN among current results of ``analytes``, and how many
    of their results had no ULN (or no number) to divide by."""
    best: Peak | None = None
    missing = 0
    for recorded in results:
        result = recorded.result
        analyte = analyte_for(result.loinc_code or "")
        if analyte is None or analyte.name not in analytes or result.value is None:
            continue
        high = result.reference_high
        if high is None or high <= 0:
            missing += 1
            continue
        multiple = result.value / high
        if best is None or multiple > best.multiple:
            best = Peak(analyte.name, multiple, result.collected_at, recorded.event_id)
    return best, missing


def edish_point(
    subject_id: str,
    site_id: str | None,
    results: Iterable[Recorded],
    supersessions: Iterable[LabResultSuperseded],
    hys_law_signal: bool,
) -> EdishPoint | NotPlottable:
    """One subject on the plot, or why they cannot be."""
    listed = list(results)
    standing = standings(listed, supersessions)
    current = [r for r in listed if standing[r.event_id] is Standing.CURRENT]
    enzyme, enzyme_missing = peak(current, ("ALT", "AST"))
    bilirubin, bilirubin_missing = peak(current, ("total bilirubin",))
    reasons = []
    if enzyme is None:
        reasons.append(
            f"ALT/AST: {enzyme_missing} result(s) without the laboratory's ULN"
            if enzyme_missing
            else "no ALT or AST result"
        )
    if bilirubin is None:
        reasons.append(
            f"total bilirubin: {bilirubin_missing} result(s) without the laboratory's ULN"
            if bilirubin_missing
            else "no total bilirubin result"
        )
    if enzyme is None or bilirubin is None:
        return NotPlottable(subject_id, site_id, "; ".join(reasons))
    return EdishPoint(subject_id, site_id, enzyme, bilirubin, hys_law_signal)


def edish(
    subjects: Mapping[str, tuple[str | None, list[Recorded], list[LabResultSuperseded], bool]],
) -> tuple[list[EdishPoint], list[NotPlottable]]:
    """Every subject placed or set aside, highlighted cases first, then by subject."""
    points: list[EdishPoint] = []
    left_out: list[NotPlottable] = []
    for subject_id, (site_id, results, supersessions, signal) in sorted(subjects.items()):
        placed = edish_point(subject_id, site_id, results, supersessions, signal)
        (points if isinstance(placed, EdishPoint) else left_out).append(placed)  # type: ignore[arg-type]
    points.sort(key=lambda p: (not p.highlighted, p.subject_id))
    return points, left_out
