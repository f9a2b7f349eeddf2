"""CTCAE grading of a finding, on its value, its multiple of ULN or LLN, or its multiple
of baseline (pure).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from services.safety_rules.domain.conditions.lab_values import lab_limits, value_in
from services.safety_rules.domain.history import LabEntry, SubjectHistory
from services.safety_rules.domain.rule_terms import Band, Grading, surely_holds
from shared.analytes import UnitNotConvertible, analyte_for


def grade_of(
    grading: Grading | None,
    quantities: Mapping[str, Decimal | None],
    comparator: str | None,
    *,
    abnormal_baseline: bool = False,
) -> int | None:
    """The worst grade whose band the finding certainly meets (None: none for certain).

    A censored value is graded only as far as it is certain: ``<0.5`` x10^9/L neutrophils
    are grade 4 (every value below 0.5 is), ``>200`` U/L ALT with a ULN of 40 is grade 2
    (at least 5 x ULN), never the worse grade it may have."""
    if grading is None:
        return None
    bands: tuple[Band, ...] = grading.bands
    if abnormal_baseline and grading.abnormal_baseline_bands:
        bands = grading.abnormal_baseline_bands
    for band in sorted(bands, key=lambda band: -band.grade):
        quantity = quantities.get(band.basis or grading.basis)
        if quantity is None:
            continue
        if surely_holds(quantity, comparator, band.operator, band.bound):
            return band.grade
    return None


def lab_quantities(
    entry: LabEntry, value: Decimal, history: SubjectHistory
) -> dict[str, Decimal | None]:
    """What a CTCAE band may be read against: the value in the rule's unit, its multiple
    of the laboratory's ULN and LLN, and its multiple of the subject's baseline."""
    result = entry.result
    assert result.value is not None
    low, high = lab_limits(result)
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


def has_abnormal_baseline(entry: LabEntry, history: SubjectHistory) -> bool:
    """CTCAE: a baseline above the ULN changes how ALT, AST and bilirubin are graded."""
    baseline = history.baseline(entry.result.loinc_code or "")
    if baseline is None or baseline.event_id == entry.event_id:
        return False
    high, value = lab_limits(baseline.result)[1], baseline.result.value
    return high is not None and value is not None and value > high


def baseline_key(history: SubjectHistory, entry: LabEntry) -> object:
    """The baseline a judgement read, as part of its memo key: a new baseline judges anew."""
    baseline = history.baseline(entry.result.loinc_code or "")
    return baseline.event_id if baseline is not None else None
