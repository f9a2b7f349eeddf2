"""What a subject chart draws from a study's rule pack: each lab rule's threshold and its
CTCAE grade bands, and how both become values on the chart's axis (pure).

The rules service owns the pack's full, strict models (``services/safety_rules``); a
service never imports another, and a chart needs only a few fields, so the notifier reads
those few itself (``services/notifier/adapters/rule_pack_limits.py``) into these types.
A bound given as a multiple (of the laboratory's ULN or LLN, or of the subject's baseline)
becomes a value with the result's own reference range and the baseline, as the rules
service grades it (``services/safety_rules/domain/conditions/grading.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

Operator = Literal["<", "<=", ">", ">="]
Basis = Literal["value", "uln", "lln", "baseline"]
#: how a rule's threshold reads: a value, a multiple of ULN or LLN, a change from baseline
ThresholdKind = Literal["value", "uln", "lln", "ratio", "percent", "absolute"]


@dataclass(frozen=True)
class Band:
    """One CTCAE grade: the finding has this grade when ``quantity operator bound`` holds."""

    grade: int
    operator: Operator
    bound: Decimal
    basis: Basis


@dataclass(frozen=True)
class Grading:
    """A rule's grading: bands worst first, and those used when the baseline is abnormal."""

    label: str  # "CTCAE v5.0 Anemia"
    bands: tuple[Band, ...]
    abnormal_baseline_bands: tuple[Band, ...] = ()


@dataclass(frozen=True)
class Threshold:
    """A rule's protocol threshold on one analyte, as its pack writes it."""

    rule_id: str
    title: str
    kind: ThresholdKind
    operator: Operator
    amount: Decimal
    unit: str | None  # the unit ``amount`` is in, for a value or an absolute change
    finding: bool  # a monitoring finding, not a protocol threshold
    fallback: Decimal | None = None  # the limit used when the laboratory sent none
    without_baseline_uln: bool = False  # a ratio rule judged on the ULN without a baseline

    @property
    def words(self) -> str:
        """``<= 9 g/dL``, ``> 3 x ULN``, ``> 1.5 x baseline``."""
        amount = f"{self.amount.normalize():f}"
        if self.kind == "value":
            return f"{self.operator} {amount} {self.unit or ''}".strip()
        if self.kind in ("uln", "lln"):
            return f"{self.operator} {amount} x {self.kind.upper()}"
        if self.kind == "ratio":
            return f"{self.operator} {amount} x baseline"
        if self.kind == "percent":
            return f"change from baseline {self.operator} {amount} %"
        return f"change from baseline {self.operator} {amount} {self.unit or ''}".strip()


@dataclass(frozen=True)
class FallbackUln:
    """A rule pack's upper limit of normal for results sent without a range: one value, or
    one by sex (the lower, female, one when the sex is unknown, as the packs say)."""

    unit: str | None
    value: Decimal | None = None
    female: Decimal | None = None
    male: Decimal | None = None

    def for_sex(self, sex: str | None) -> Decimal | None:
        if self.value is not None:
            return self.value
        if sex == "F" and self.female is not None:
            return self.female
        if sex == "M" and self.male is not None:
            return self.male
        known = [v for v in (self.female, self.male) if v is not None]
        return min(known) if known else None


@dataclass(frozen=True)
class AnalyteLimits:
    """Everything the pack says about one analyte that a chart can draw."""

    analyte: str
    thresholds: tuple[Threshold, ...] = ()
    grading: Grading | None = None


@dataclass(frozen=True)
class Reference:
    """What a multiple is read against, for one result: its laboratory's limits and the
    subject's baseline, all in the unit the chart draws."""

    low: Decimal | None
    high: Decimal | None
    baseline: Decimal | None
    baseline_high: Decimal | None = None  # the baseline result's own ULN


@dataclass(frozen=True)
class Region:
    """The values that fall in one grade: ``lower`` to ``upper`` (None: unbounded), each
    end open (excluded) or closed as the bands' operators say."""

    grade: int
    lower: Decimal | None
    upper: Decimal | None
    lower_open: bool = False
    upper_open: bool = False

    def holds(self, value: Decimal) -> bool:
        if self.lower is not None and (
            value < self.lower or (self.lower_open and value == self.lower)
        ):
            return False
        return self.upper is None or not (
            value > self.upper or (self.upper_open and value == self.upper)
        )


def band_value(band: Band, reference: Reference) -> Decimal | None:
    """A band's bound on the value axis (None: its basis is not known for this result)."""
    if band.basis == "value":
        return band.bound
    base = {"uln": reference.high, "lln": reference.low, "baseline": reference.baseline}
    multiple_of = base[band.basis]
    if multiple_of is None or multiple_of <= 0:
        return None
    return band.bound * multiple_of


def abnormal_baseline(reference: Reference) -> bool:
    """CTCAE: a baseline above its ULN grades ALT, AST and bilirubin on the baseline."""
    return (
        reference.baseline is not None
        and reference.baseline_high is not None
        and reference.baseline > reference.baseline_high
    )


def grade_regions(grading: Grading, reference: Reference) -> tuple[Region, ...]:
    """The value ranges of each grade for one result, worst grade first.

    Bands are tried worst first, so a value is in grade g when a band of grade g holds and
    no worse one does: for rising bands (``>``) from the lowest bound of grade g up to the
    lowest bound of any worse grade; for falling bands (``<``) the mirror image. Bands
    whose basis is unknown for this result (no ULN, no baseline) are left out."""
    bands = grading.bands
    if abnormal_baseline(reference) and grading.abnormal_baseline_bands:
        bands = grading.abnormal_baseline_bands
    regions: list[Region] = []
    for rising in (True, False):
        bounds: dict[int, list[tuple[Decimal, Operator]]] = {}
        for band in bands:
            if (band.operator in (">", ">=")) != rising:
                continue
            value = band_value(band, reference)
            if value is not None:
                bounds.setdefault(band.grade, []).append((value, band.operator))
        worse: list[tuple[Decimal, Operator]] = []
        for grade in sorted(bounds, reverse=True):
            # a value is out of this grade where a worse band holds: up to (and, for a
            # strict worse band, including) that band's bound
            if rising:
                low, low_op = min(bounds[grade], key=lambda pair: (pair[0], pair[1] == ">"))
                high = min(worse, key=lambda pair: (pair[0], pair[1] == ">"), default=None)
                if high is None or low < high[0]:
                    regions.append(
                        Region(
                            grade,
                            low,
                            None if high is None else high[0],
                            lower_open=low_op == ">",
                            upper_open=high is not None and high[1] == ">=",
                        )
                    )
            else:
                top, top_op = max(bounds[grade], key=lambda pair: (pair[0], pair[1] == "<="))
                bottom = max(worse, key=lambda pair: (pair[0], pair[1] == "<="), default=None)
                if bottom is None or bottom[0] < top:
                    regions.append(
                        Region(
                            grade,
                            None if bottom is None else bottom[0],
                            top,
                            lower_open=bottom is not None and bottom[1] == "<=",
                            upper_open=top_op == "<",
                        )
                    )
            worse.extend(bounds[grade])
    return tuple(sorted(regions, key=lambda region: -region.grade))


def grade_of_value(regions: Iterable[Region], value: Decimal) -> int | None:
    """The worst grade whose region holds ``value`` (None: none)."""
    held = [region.grade for region in regions if region.holds(value)]
    return max(held, default=None)


def _compare(value: Decimal, operator: Operator, bound: Decimal) -> bool:
    if operator == "<":
        return value < bound
    if operator == "<=":
        return value <= bound
    if operator == ">":
        return value > bound
    return value >= bound


def surely_holds(
    value: Decimal, comparator: str | None, operator: Operator, bound: Decimal
) -> bool:
    """Whether every value a possibly censored result allows meets ``operator bound``
    (``<0.5`` meets ``< 0.5``; ``>7`` does not meet ``<= 9``), as the rules service judges."""
    if comparator in (None, "="):
        return _compare(value, operator, bound)
    below = comparator in ("<", "<=")
    if below != (operator in ("<", "<=")):
        return False
    if comparator in ("<", ">"):
        return _compare(value, "<=" if below else ">=", bound)
    return _compare(value, operator, bound)


def grade_of(
    grading: Grading, reference: Reference, value: Decimal, comparator: str | None
) -> int | None:
    """The worst grade whose band the result certainly meets, as the rules service grades
    (a censored ``<0.5`` x10^9/L neutrophil count is grade 4: every value it allows is)."""
    bands = grading.bands
    if abnormal_baseline(reference) and grading.abnormal_baseline_bands:
        bands = grading.abnormal_baseline_bands
    for band in sorted(bands, key=lambda band: -band.grade):
        bound = band_value(band, reference)
        if bound is not None and surely_holds(value, comparator, band.operator, bound):
            return band.grade
    return None


def threshold_value(threshold: Threshold, reference: Reference) -> Decimal | None:
    """Where a threshold lies on the value axis for one result (None: cannot be placed:
    no limit, no baseline). ``value`` thresholds must already be in the chart's unit."""
    if threshold.kind == "value":
        return threshold.amount
    if threshold.kind in ("uln", "lln"):
        limit = reference.high if threshold.kind == "uln" else reference.low
        limit = limit if limit is not None and limit > 0 else threshold.fallback
        return None if limit is None else threshold.amount * limit
    if reference.baseline is None:
        if threshold.kind == "ratio" and threshold.without_baseline_uln and reference.high:
            return threshold.amount * reference.high
        return None
    if threshold.kind == "ratio":
        return threshold.amount * reference.baseline
    if threshold.kind == "percent":
        return reference.baseline * (1 + threshold.amount / 100)
    return reference.baseline + threshold.amount
