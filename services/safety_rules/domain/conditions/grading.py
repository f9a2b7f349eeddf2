"""CTCAE grading of a finding, on its value, its multiple of ULN or LLN, or its multiple
of baseline (pure).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from services.safety_rules.domain.conditions.lab_values import value_in
from services.safety_rules.domain.history import LabEntry, SubjectHistory
from services.safety_rules.domain.rule_terms import Band, Grading, Operator, compare, may_hold
from shared.analytes import UnitNotConvertible, analyte_for


def surely_holds(
    value: Decimal, comparator: str | None, operator: Operator, bound: Decimal
) -> bool:
    """Whether a possibly censored value certainly meets ``operator bound`` (for grading:
    '<0.5' is certainly below 1.0, '>200' is not certainly above 400)."""
    if comparator in (None, "="):
        return compare(value, operator, bound)
    below = comparator in ("<", "<=")
    if below != (operator in ("<", "<=")):
        return False
    if comparator in ("<", ">"):
        return compare(value, "<=" if below else ">=", bound)
    return compare(value, operator, bound)


def grade_of(
    grading: Grading | None,
    quantities: Mapping[str, Decimal | None],
    comparator: str | None,
    *,
    abnormal_baseline: bool = False,
) -> int | None:
    """The worst grade whose band the finding certainly meets; else the mildest it may meet."""
    if grading is None:
        return None
    bands: tuple[Band, ...] = grading.bands
    if abnormal_baseline and grading.abnormal_baseline_bands:
        bands = grading.abnormal_baseline_bands
    ordered = sorted(bands, key=lambda band: -band.grade)
    maybe: int | None = None
    for band in ordered:
        quantity = quantities.get(band.basis or grading.basis)
        if quantity is None:
            continue
        if surely_holds(quantity, comparator, band.operator, band.bound):
            return band.grade
        if may_hold(quantity, comparator, band.operator, band.bound):
            maybe = band.grade
    return maybe


def _lab_quantities(
    entry: LabEntry, value: Decimal, history: SubjectHistory
) -> dict[str, Decimal | None]:
    result = entry.result
    assert result.value is not None
    high, low = result.reference_high, result.reference_low
    baseline = history.baseline(result.loinc_code or "")
    base_value = None
    analyte = analyte_for(result.loinc_code or "")
    if baseline is not None and analyte is not None and baseline.event_id != entry.event_id:
        try:
            base = value_in(baseline, analyte.canonical_unit)
            if base > 0:
                base_value = value_in(entry, analyte.canonical_unit) / base
        except UnitNotConvertible:
            base_value = None
    return {
        "value": value,
        "uln": result.value / high if high and high > 0 else None,
        "lln": result.value / low if low and low > 0 else None,
        "baseline": base_value,
    }


def _abnormal_baseline(entry: LabEntry, history: SubjectHistory) -> bool:
    """CTCAE: a baseline above the ULN changes how ALT, AST and bilirubin are graded."""
    baseline = history.baseline(entry.result.loinc_code or "")
    if baseline is None or baseline.event_id == entry.event_id:
        return False
    high, value = baseline.result.reference_high, baseline.result.value
    return high is not None and value is not None and value > high


def _baseline_key(history: SubjectHistory, entry: LabEntry) -> object:
    baseline = history.baseline(entry.result.loinc_code or "")
    return baseline.event_id if baseline is not None else None
