"""What a laboratory result, a time or a reference range cannot be (pure).

A value that cannot be physiological (a negative concentration, a haemoglobin of zero, a
platelet count of ten million) is a transcription or unit error, never a finding: it is
kept as sent, never judged by a rule (it neither raises nor resolves a signal) and raised
as the data-quality issue ``implausible-value`` for the data manager. Both ingest (which
answers the sender) and the rules service (partners may publish straight to Kafka) ask
the same question, so it is answered here.

The limits are *plausibility* limits, not reference intervals nor critical values: they
are set well beyond the most extreme values reported in living patients, so that every
abnormal and every critical value is still judged and alerts. They are keyed by the
analyte's name in :mod:`shared.analytes` and given in its canonical unit. Each range says
where its bounds come from; the general sources are Tietz Textbook of Laboratory Medicine
(7th ed., 2022: reference intervals and the pathophysiology of extreme values) and the
analytical measuring ranges of the common analysers (Sysmex XN series for counts;
Roche cobas / Abbott Alinity for chemistry and immunoassays), whose upper ends, with
automatic dilution, are already far above what a living patient shows.

A censored value (HL7 SN, FHIR ``Quantity.comparator``) says only on which side of its
number the true value lies: ``<0.1`` is any value from 0 to 0.1, so it is implausible
only when that whole interval lies outside the range (``<-3``, or ``>10000000``
platelets); a detection limit below the range's low end (``<0.5`` g/dL) still says
"at most", which a low but real value could be, and is not called impossible.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from shared.analytes import Analyte, UnitNotConvertible, analyte_for
from shared.events.payloads import LabResultReported


@dataclass(frozen=True)
class PlausibleRange:
    """The values a living patient's result can have, in the analyte's canonical unit:
    from ``low`` (excluded when ``low_excluded``: zero is impossible but any small positive
    value is not) to ``high``, with where the bounds come from."""

    low: Decimal
    high: Decimal
    source: str
    low_excluded: bool = False

    def __post_init__(self) -> None:
        assert self.low < self.high, "a plausible range's low is below its high"

    def text(self, unit: str) -> str:
        low = f"above {self.low:f}" if self.low_excluded else f"{self.low:f}"
        return f"{low} to {self.high:f} {unit}".strip()


_ZERO = Decimal(0)


def _r(low: str, high: str, source: str, *, low_excluded: bool = False) -> PlausibleRange:
    return PlausibleRange(Decimal(low), Decimal(high), source, low_excluded)


#: by analyte name (shared.analytes.ANALYTES), in that analyte's canonical unit
PLAUSIBLE: dict[str, PlausibleRange] = {
    "haemoglobin": _r(
        "1",
        "25",
        "g/dL; survival below 2 g/dL is exceptional (case reports of profound anaemia), "
        "polycythaemia vera rarely exceeds 22 g/dL; analysers read to 25-26 g/dL",
    ),
    "neutrophils": _r(
        "0", "1000", "10*9/L; 0 in agranulocytosis; a fraction of the leukocyte limit"
    ),
    "lymphocytes": _r(
        "0", "2000", "10*9/L; 0 possible after lymphodepletion; CLL counts reach some hundreds"
    ),
    "leukocytes": _r(
        "0",
        "2000",
        "10*9/L; hyperleukocytosis in acute or chronic leukaemia reaches some hundreds; "
        "Sysmex XN reads to 440 x10*9/L undiluted",
    ),
    "eosinophils": _r("0", "500", "10*9/L; hypereosinophilic syndromes reach some tens x10*9/L"),
    # differential percentages (issue 15, analytes): a part of the leukocytes is 0 to 100 %
    "neutrophils percent": _r("0", "100", "% of leukocytes: a part cannot exceed the whole"),
    "lymphocytes percent": _r("0", "100", "% of leukocytes: a part cannot exceed the whole"),
    "eosinophils percent": _r("0", "100", "% of leukocytes: a part cannot exceed the whole"),
    "platelets": _r(
        "0",
        "10000",
        "10*9/L; 0 in severe thrombocytopenia; essential thrombocythaemia rarely exceeds "
        "3000-4000; Sysmex XN reads to 5000 x10*9/L",
    ),
    "ALT": _r(
        "0", "100000", "U/L; ischaemic or toxic hepatitis reaches some thousands to 10000-20000"
    ),
    "AST": _r(
        "0", "100000", "U/L; ischaemic or toxic hepatitis reaches some thousands to 10000-20000"
    ),
    "alkaline phosphatase": _r(
        "0", "50000", "U/L; cholestasis and bone disease reach a few thousand"
    ),
    "total bilirubin": _r(
        "0", "100", "mg/dL; the most severe jaundice (Crigler-Najjar, liver failure) ~ 50 mg/dL"
    ),
    "creatinine": _r(
        "0",
        "60",
        "mg/dL; cannot be zero in a living patient (muscle makes it); end-stage renal "
        "failure before dialysis reaches 20-30 mg/dL",
        low_excluded=True,
    ),
    "eGFR": _r(
        "0",
        "500",
        "mL/min/{1.73_m2}; 0 in anuria; creatinine-based equations rarely exceed 150-200 "
        "even in glomerular hyperfiltration (laboratories report above 90 or 120 as '>')",
    ),
    "creatinine clearance": _r(
        "0", "1000", "mL/min; 0 in anuria; glomerular hyperfiltration reaches 200-300 mL/min"
    ),
    "body weight": _r(
        "0.2",
        "700",
        "kg; the lightest surviving newborns weigh some 250 g; the heaviest recorded "
        "human some 635 kg",
    ),
    "IgG": _r("0", "250", "g/L; IgG myeloma reaches 100-150 g/L; agammaglobulinaemia ~ 0"),
    "IgA": _r("0", "200", "g/L; IgA myeloma reaches some tens of g/L; IgA deficiency ~ 0"),
    "IgM": _r("0", "200", "g/L; Waldenström macroglobulinaemia reaches some tens of g/L"),
    "complement C3": _r("0", "20", "g/L; reference about 0.9-1.8; acute phase rarely > 4"),
    "complement C4": _r("0", "10", "g/L; reference about 0.1-0.4; acute phase rarely > 1"),
    "TSH": _r(
        "0", "2000", "m[IU]/L; 0 when suppressed; severe primary hypothyroidism some hundreds"
    ),
    "urine protein/creatinine": _r(
        "0", "200", "g/g; massive nephrotic proteinuria reaches some tens of g/g"
    ),
    "hCG quantitative": _r(
        "0",
        "10000000",
        "m[IU]/mL; pregnancy peaks ~ 0.2-0.3 million, molar pregnancy and choriocarcinoma "
        "reach some millions",
    ),
    "HBV DNA": _r("0", "1e12", "[IU]/mL; HBeAg-positive immune tolerance reaches 1e9-1e10"),
    "HCV RNA quantitative": _r(
        "0", "1e10", "[IU]/mL; untreated chronic hepatitis C reaches 1e7-1e8"
    ),
}


def plausible_range(analyte: Analyte) -> PlausibleRange | None:
    """The analyte's plausible range; None for one judged by what it says (Ord)."""
    if analyte.scale != "Qn":
        return None
    found = PLAUSIBLE.get(analyte.name)
    if found is None:
        # an analyte added to the catalogue without a range (a test forbids it): its
        # number is a concentration, a count or an activity, none of which is negative
        return PlausibleRange(_ZERO, Decimal("1e15"), "a quantity is never negative")
    return found


def _canonical(result: LabResultReported, analyte: Analyte) -> Decimal | None:
    if result.canonical_value is not None and result.canonical_unit == analyte.canonical_unit:
        return result.canonical_value
    if result.value is None or result.unit is None:
        return None
    try:
        return analyte.to_canonical(result.value, result.unit)
    except UnitNotConvertible:
        # a unit with no universal factor (copies/mL for IU/mL) tells only the sign: a
        # negative value is below anything in any unit, a positive one cannot be placed
        if analyte.unscaled(result.unit) and result.value < 0:
            return result.value
        return None


def _below(value: Decimal, bounds: PlausibleRange) -> bool:
    return value <= bounds.low if bounds.low_excluded else value < bounds.low


def implausible_value(result: LabResultReported) -> str | None:
    """Why this result's value cannot be physiological, or None (also when it cannot be
    told: not a catalogued Qn analyte, no number, a unit that does not convert). The text
    names the analyte, its code and the plausible range, never the value as sent."""
    analyte = analyte_for(result.loinc_code) if result.loinc_code else None
    if analyte is None or result.value is None or not result.result_status.is_measurement:
        return None
    bounds = plausible_range(analyte)
    value = _canonical(result, analyte) if bounds is not None else None
    if bounds is None or value is None:
        return None
    comparator = result.comparator or ""
    # '<x' is any value below x: impossible only when even 0 (the least a quantity may
    # be) is: x at or below 0. '<=x' also allows x itself, so '<=0' is impossible when 0
    # is (haemoglobin, creatinine: every value it allows is). '>x' is any value above x:
    # impossible when x is past high.
    if comparator == "<=":
        too_low, too_high = value < 0 or (value == 0 and _below(_ZERO, bounds)), False
    elif comparator.startswith("<"):
        too_low, too_high = value <= 0, False
    elif comparator.startswith(">"):
        too_low, too_high = False, value >= bounds.high
    else:
        too_low, too_high = _below(value, bounds), value > bounds.high
    if not (too_low or too_high):
        return None
    side = "below" if too_low else "above"
    return (
        f"{analyte.name} ({result.loinc_code}) was reported with a value {side} anything "
        f"physiological (plausible: {bounds.text(analyte.canonical_unit)}): kept as sent and "
        "not judged by any rule; ask the laboratory to check and correct it"
    )


#: a body weight this many times the subject's enrolment weight, or this fraction of it,
#: is a typing or unit error (62 typed 6.2 or 620), not a change: the most extreme weight
#: changes of adults (bariatric surgery, anorexia nervosa, massive oedema) stay within a
#: factor of two over a trial's span
WEIGHT_CHANGE_FACTOR = Decimal(3)


def implausible_weight(result: LabResultReported, enrolment_kg: Decimal | None) -> str | None:
    """Why a body weight result cannot be the subject's, against the enrolment weight, or
    None (not a body weight, no enrolment weight, a unit that does not convert). The text
    names the analyte and the factor, never the value."""
    analyte = analyte_for(result.loinc_code) if result.loinc_code else None
    if analyte is None or analyte.name != "body weight" or not enrolment_kg:
        return None
    if result.comparator or not result.result_status.is_measurement:
        return None
    kg = _canonical(result, analyte)
    if kg is None or kg <= 0:
        return None  # a value no one can weigh is implausible_value's to say
    if enrolment_kg / WEIGHT_CHANGE_FACTOR < kg < enrolment_kg * WEIGHT_CHANGE_FACTOR:
        return None
    return (
        f"body weight ({result.loinc_code}) was reported at {WEIGHT_CHANGE_FACTOR} times or "
        "more, or a third or less, of the subject's enrolment weight: a typing or unit error, "
        "not a change of weight; kept as sent and not used by any rule (doses per kg and "
        "creatinine clearance use the enrolment weight); ask the site to check it"
    )


def collected_before_birth(collected_at: datetime, birth_date: date) -> bool:
    """Whether a specimen is dated before its subject was born (by the collection's own
    calendar date, so a time zone cannot make the day of birth look earlier)."""
    return collected_at.date() < birth_date


def unusable_reference_range(low: Decimal | None, high: Decimal | None) -> bool:
    """Whether a laboratory's reference range cannot be right: low above high (a range
    of 40-7 U/L, the limits swapped or mistyped). Such a range is set aside, never used
    as a limit."""
    return low is not None and high is not None and low > high


#: Cockcroft-Gault was derived in adults (Cockcroft & Gault, Nephron 1976; 18 to 92 years)
#: and is not valid below this age; a subject of an adult trial younger than this has a
#: mistyped birth date
ADULT_AGE_YEARS = 18
#: the least an adult can weigh: the lowest weights reported in surviving adults (severe
#: anorexia nervosa, BMI about 7-8) are some 20-25 kg; below 20 kg an adult's weight is a
#: lost digit or grams sent as kilograms
ADULT_BODY_WEIGHT_MIN_KG = Decimal(20)


def age_years(birth: date, day: date) -> int:
    """Completed years of age on ``day``."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def implausible_adult_weight(kg: Decimal, birth: date, day: date) -> str | None:
    """Why a body weight cannot be this adult's, or None (a child's, or plausible). The
    text names the limit, never the value."""
    if age_years(birth, day) < ADULT_AGE_YEARS or kg >= ADULT_BODY_WEIGHT_MIN_KG:
        return None
    return (
        f"body weight below {ADULT_BODY_WEIGHT_MIN_KG:f} kg for an adult (by the subject's "
        "birth date): kept as sent and not used by any rule (Cockcroft-Gault); ask the site "
        "to check and correct it (a lost digit, grams sent as kilograms)"
    )


def implausible_reference_range(result: LabResultReported) -> str | None:
    """What cannot be right in a laboratory's reference range for this result, or None.

    Low above high (a range of 40-7 U/L, the limits swapped or mistyped); for an analyte of
    the catalogue, whose quantity is never negative, also a negative low limit, an upper
    limit at or below zero (a ULN of 0 U/L makes every value infinitely many times it) and
    an upper limit beyond the analyte's plausible range (no patient's value can reach it,
    so no laboratory's limit can be there). Such a range is set aside, never used as a
    limit, and raised as ``reference-range-implausible``; the text names no value."""
    low, high = result.reference_low, result.reference_high
    if unusable_reference_range(low, high):
        return "its low limit is above its high limit"
    analyte = analyte_for(result.loinc_code) if result.loinc_code else None
    bounds = plausible_range(analyte) if analyte is not None else None
    if analyte is None or bounds is None or bounds.low < 0:
        return None
    if low is not None and low < 0:
        return f"its low limit is negative, which no {analyte.name} result can be"
    if high is not None and high <= 0:
        return f"its high limit is not above zero, which no {analyte.name} limit can be"
    if high is not None and result.unit:
        try:
            canonical = analyte.to_canonical(high, result.unit)
        except UnitNotConvertible:
            return None
        if canonical > bounds.high:
            return (
                f"its high limit is above anything physiological for {analyte.name} "
                f"(plausible: {bounds.text(analyte.canonical_unit)})"
            )
    return None
