"""How a lab result reads on its chart (pure): the analyte it is drawn under, the unit of
the chart, its number and its laboratory limits in that unit, and the protocol thresholds
converted to it.

A known analyte is drawn in its canonical unit (``shared.analytes``); an unknown one in
the unit of its first numeric result. What cannot be converted is left off the chart (and
said in its table), never drawn at a wrong height.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal

from services.notifier.domain.protocol_limits import AnalyteLimits, Threshold
from shared.analytes import Analyte, UnitNotConvertible, analyte_for, analyte_named
from shared.events import LabResultReported


def analyte_name(result: LabResultReported) -> str:
    """The analyte a result is drawn under: Vigil's name for it, else its code or text."""
    known = analyte_for(result.loinc_code or "")
    if known is not None:
        return known.name
    return result.loinc_code or result.local_code or result.analyte_text or "unnamed analyte"


def in_unit(value: Decimal | None, result: LabResultReported, unit: str | None) -> Decimal | None:
    """A number the result carries in its reported unit (its value or a reference limit),
    in the series' ``unit`` (None: cannot be)."""
    if value is None or unit is None:
        return None
    if result.unit == unit:
        return value
    analyte = analyte_for(result.loinc_code or "")
    if analyte is None or result.unit is None or unit != analyte.canonical_unit:
        return None
    try:
        return analyte.to_canonical(value, result.unit)
    except UnitNotConvertible:
        return None


def series_unit(results: Sequence[LabResultReported]) -> str | None:
    """The unit an analyte is drawn in: the canonical one when Vigil knows the analyte,
    else the unit of its first numeric result."""
    known = analyte_for(results[0].loinc_code or "")
    if known is not None:
        return known.canonical_unit
    return next((r.unit for r in results if r.value is not None and r.unit), None)


def plotted_value(result: LabResultReported, unit: str | None) -> Decimal | None:
    if result.canonical_value is not None and result.canonical_unit == unit:
        return result.canonical_value
    return in_unit(result.value, result, unit)


#: the most significant digits a number is shown with: more is noise no laboratory measured
MAX_DIGITS = 6


def readable(number: Decimal, digits: int = MAX_DIGITS) -> str:
    """``number`` as it reads on a page: at most ``digits`` (and never more than
    :data:`MAX_DIGITS`) significant digits, no exponent, no trailing zeros."""
    digits = max(1, min(digits, MAX_DIGITS))
    if number.is_zero() or not number.is_finite():
        return f"{number.normalize():f}"
    significant = len(number.normalize().as_tuple().digits)
    if significant > digits:
        number = number.quantize(Decimal(1).scaleb(number.adjusted() - digits + 1))
    return f"{number.normalize():f}"


def converted_digits(reported: Decimal | None) -> int:
    """How many significant digits a converted number keeps: one more than the reported
    number was measured with, at least 3 (and at most :data:`MAX_DIGITS`)."""
    measured = len(reported.normalize().as_tuple().digits) if reported is not None else 0
    return max(3, measured + 1)


def shown_value(result: LabResultReported, unit: str | None) -> tuple[str, str]:
    """What a result's table row reads, and the unit that number is in: the value as drawn
    in the chart's ``unit`` when it converts, else the value in its own reported unit, never
    a reported number beside the chart's unit."""
    comparator = result.comparator or ""
    drawn = plotted_value(result, unit)
    if drawn is not None and unit is not None:
        same = result.value is not None and result.unit == unit and drawn == result.value
        digits = MAX_DIGITS if same else converted_digits(result.value)
        return f"{comparator}{readable(drawn, digits)}", unit
    if result.value is not None:
        return f"{comparator}{readable(result.value)}", result.unit or "(no unit sent)"
    text = result.qualitative or ("(text result)" if result.value_text else "(no value)")
    return text, result.unit or ""


def shown_range(result: LabResultReported, unit: str | None) -> str:
    """The laboratory's reference range as a row reads it: in the chart's ``unit`` when both
    limits convert, else in the result's own unit (said), else 'not sent'."""
    low, high = result.reference_low, result.reference_high
    if low is None and high is None:
        return "not sent"
    converted = [in_unit(v, result, unit) for v in (low, high)]
    if all(c is not None for c, v in zip(converted, (low, high), strict=True) if v is not None):
        parts = [
            "(none)" if c is None else readable(c, converted_digits(v))
            for c, v in zip(converted, (low, high), strict=True)
        ]
        return f"{parts[0]} to {parts[1]}"
    parts = ["(none)" if v is None else readable(v) for v in (low, high)]
    return f"{parts[0]} to {parts[1]} {result.unit or '(no unit sent)'}"


def thresholds_in(limits: AnalyteLimits, unit: str | None) -> AnalyteLimits:
    """The limits with each value threshold in ``unit``; one that cannot be converted is
    left out rather than drawn at a wrong height."""
    kept: list[Threshold] = []
    for threshold in limits.thresholds:
        if threshold.kind not in ("value", "absolute") or threshold.unit in (None, unit):
            kept.append(threshold)
            continue
        analyte = _catalogued(limits.analyte)
        if analyte is None or unit != analyte.canonical_unit or threshold.unit is None:
            continue
        try:
            amount = analyte.to_canonical(threshold.amount, threshold.unit)
        except UnitNotConvertible:
            continue
        kept.append(replace(threshold, amount=amount, unit=unit))
    return replace(limits, thresholds=tuple(kept))


def _catalogued(name: str) -> Analyte | None:
    try:
        return analyte_named(name)
    except ValueError:
        return None
