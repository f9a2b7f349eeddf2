"""Lab analytes Vigil knows: LOINC codes, canonical UCUM units and unit conversions.

Both ingest (normalisation) and safety_rules (partners may publish straight to Kafka)
convert units, so the catalogue lives here. Conversions are exact decimal arithmetic.

An analyte's codes are built from LOINC's axes, not from one example code: the component
(e.g. Creatinine), every property a laboratory reports it in (mass concentration MCnc and
its substance-concentration variant SCnc, arriving in mmol/L or umol/L: the analyte's
conversions cover both), every system that measures the same thing in the body (Blood,
Serum, Plasma, Ser/Plas), the scale (Qn or Ord: an analyte has one), and the method
variants a result may carry (automated and manual counts, with or without
pyridoxal-5'-phosphate). Panel codes (75622-1, a set of HIV tests) are never result codes
and are not listed. Every code and its LOINC long common name is in :data:`LOINC_NAMES`,
which ``docs/loinc-codes.md`` renders (``render_loinc_table``; a test keeps them equal).
Source: LOINC (Regenstrief Institute, loinc.org), long common names as published; the
code sets checked against the VSAC value sets of the eCQM update 2025-05-08 (haemoglobin,
platelet, leukocyte, creatinine, bilirubin and AST lab tests).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from functools import cached_property
from typing import Literal

from pydantic import ValidationError

from shared.events.payloads import LabResultReported

# significant digits a canonical value keeps (a double holds 15 exactly)
CANONICAL_DIGITS = 15


class UnitNotConvertible(ValueError):
    """A known analyte arrived in a unit Vigil cannot convert to the canonical one."""


#: LOINC scale: Qn is judged by its number (and converted to the canonical unit); Ord is
#: an ordinal answer (positive / negative / detected), judged by what it says
Scale = Literal["Qn", "Ord"]


@dataclass(frozen=True)
class Analyte:
    """One analyte: its name, LOINC codes, canonical unit and how other units convert."""

    name: str
    loinc_codes: tuple[str, ...]
    canonical_unit: str
    # UCUM unit -> (multiply by, divide by) to get the canonical unit
    conversions: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)
    scale: Scale = "Qn"
    #: units of the same quantity with no universal factor to the canonical unit (HBV DNA
    #: in copies/mL against IU/mL: the factor is assay-specific, about 5): a value in one is
    #: kept without a canonical value and read only where no factor is needed, by a
    #: detection rule (threshold 0: zero is zero in any unit); any other rule says it could
    #: not convert it
    unscaled_units: tuple[str, ...] = ()

    @cached_property
    def _by_spelling(self) -> dict[str, tuple[Decimal, Decimal]]:
        """Every spelling this analyte accepts, folded, with its factors: the canonical
        unit, the conversions, and the other spellings laboratories send for them
        (:data:`UNIT_SPELLINGS`). Raises when two spellings fold to one key with different
        factors (checked for the whole catalogue at import)."""
        units = {self.canonical_unit: (_ONE, _ONE), **self.conversions}
        spellings = {
            **units,
            **{sent: units[ucum] for sent, ucum in UNIT_SPELLINGS.items() if ucum in units},
        }
        folded: dict[str, tuple[Decimal, Decimal]] = {}
        for unit, factors in spellings.items():
            key = normalise_unit(unit)
            earlier = folded.setdefault(key, factors)
            if earlier[0] * factors[1] != earlier[1] * factors[0]:
                raise AssertionError(f"{self.name}: {unit!r} folds onto another unit")
        return folded

    def accepts(self, unit: str) -> bool:
        """Whether a value in ``unit`` (any spelling Vigil knows) converts."""
        return normalise_unit(unit) in self._by_spelling

    def unscaled(self, unit: str) -> bool:
        """Whether ``unit`` is one of :attr:`unscaled_units` (any spelling): a value in it is
        known, judged only as zero or above zero."""
        return normalise_unit(unit) in self._unscaled_keys

    @cached_property
    def _unscaled_keys(self) -> frozenset[str]:
        """:attr:`unscaled_units`, folded: built once, not for every result read."""
        return frozenset(normalise_unit(u) for u in self.unscaled_units)

    def to_canonical(self, value: Decimal, unit: str) -> Decimal:
        """Convert ``value`` given in ``unit`` to the canonical unit."""
        try:
            multiply, divide = self._by_spelling[normalise_unit(unit)]
        except KeyError:
            known = ", ".join([self.canonical_unit, *self.conversions])
            # the unit is sender text: named only when it is one Vigil knows
            given = known_unit(unit)
            reported = f"in {given}" if given else "in a unit Vigil does not recognise"
            raise UnitNotConvertible(
                f"{self.name} reported {reported}, which Vigil cannot convert to "
                f"{self.canonical_unit}; convertible units: {known}"
            ) from None
        if multiply == divide:
            return value
        return value * multiply / divide


_SPACES = re.compile(r"\s+")
_TIMES_TEN = re.compile(r"^(?:x|\*)?10(?:\*|\*\*|e)(\d)")
_SUPERSCRIPT_DIGITS = "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079"
_TEN_TO_SUPERSCRIPT = re.compile(f"10([{_SUPERSCRIPT_DIGITS}]+)")
_FROM_SUPERSCRIPT = str.maketrans(_SUPERSCRIPT_DIGITS, "0123456789")
# UCUM: an annotation in curly braces carries no meaning (mg/mg{creat} is mg/mg)
_ANNOTATION = re.compile(r"\{[^{}]*\}")
# a power written after a unit symbol with a caret (mm^3, folded to mm*3) is UCUM's mm3
_UNIT_POWER = re.compile(r"(?<=[a-z])\*(?=\d)")


@functools.lru_cache(maxsize=4096)
def normalise_unit(unit: str) -> str:
    """Fold the ways one spelling of a unit is written into one key.

    UCUM codes are case-sensitive, but lab systems routinely send ``g/dl``, ``G/DL``,
    ``10^9/L``, ``x10E9/L``, 10^9/L after a multiplication sign (U+00D7), ``µmol/L``
    (micro sign U+00B5) or ``μmol/L`` (Greek mu U+03BC), ``mcL`` for microlitre, and
    UCUM's brackets (``m[IU]/mL``) or not (``mIU/mL``), superscript powers (``10⁹/L``,
    ``mm³``), a caret after a unit symbol (``mm^3``), full-width characters (NFKC) and
    UCUM annotations (``mg/mg{creat}``: braces carry no meaning, so they are dropped);
    matching folds all of these. Case
    folding makes ``G/L`` (giga per litre, a count) and ``g/L`` (grams per litre) one key:
    an analyte never accepts both, so
    each analyte reads the key its own way (see :data:`UNIT_SPELLINGS`)."""
    unit = _TEN_TO_SUPERSCRIPT.sub(
        lambda power: "10*" + power.group(1).translate(_FROM_SUPERSCRIPT), unit
    )
    unit = _ANNOTATION.sub("", unicodedata.normalize("NFKC", unit))
    folded = _SPACES.sub("", unit).replace("µ", "u").replace("μ", "u").replace("\u00d7", "x")
    folded = folded.lower().replace("^", "*").replace("[", "").replace("]", "")
    folded = _TIMES_TEN.sub(r"10*\1", folded)
    folded = re.sub(r"(?<![a-z])mc(?=l\b|l/|l$)", "u", folded)  # mcL: microlitre
    folded = _UNIT_POWER.sub("", folded)
    return folded


_ONE = Decimal(1)


def _units(*pairs: tuple[str, Decimal, Decimal]) -> dict[str, tuple[Decimal, Decimal]]:
    return {unit: (mul, div) for unit, mul, div in pairs}


#: Spellings laboratories and pharmacies send for a catalogue unit, beyond what
#: :func:`normalise_unit` folds (case, micro sign, ^ and E for powers of ten, brackets):
#: sent spelling -> the UCUM unit it means. An analyte accepts a spelling only when it
#: accepts the unit it means, so ``G/L`` is giga per litre for a count and nothing for
#: haemoglobin (whose ``g/L``, grams per litre, folds to the same key).
#: Not listed, on purpose: ``Gi/L`` (UCUM ``Gi`` is gibi, 2^30, not 10^9: a sender who
#: means 10^9/L must say so), ``kgs`` (no laboratory or UCUM spelling). ``g%`` is read as
#: g/dL (grams per 100 mL, as haematology reports print haemoglobin): only an analyte
#: measured in mass per volume accepts g/dL, so it is never read as a mass fraction.
#: ``mU`` for TSH and hCG is the milli-international unit laboratories print as mU (the
#: analyte's only unit of that name: the enzymes' U/L is not accepted by either).
UNIT_SPELLINGS: dict[str, str] = {
    "gm/dL": "g/dL",  # US pharmacy and older LIS spelling of gram
    "gm/L": "g/L",
    "G/L": "10*9/L",  # giga per litre (SI prefix G = 10^9)
    "Gpt/L": "10*9/L",  # Gigapartikel per litre (German laboratories)
    "/nL": "10*9/L",  # per nanolitre = 10^9 per litre
    "Thousand/uL": "10*3/uL",  # Epic and US LIS spelling of 10^3/uL
    "cells/mm3": "/mm3",
    "lbs": "[lb_av]",  # the FHIR R4 example Observation sends unit "lbs", code [lb_av]
    # eGFR: UCUM writes the 1.73 m2 of body surface as an annotation; laboratories do not
    "mL/min/1.73m2": "mL/min/{1.73_m2}",
    "mL/min/1.73m\u00b2": "mL/min/{1.73_m2}",  # superscript two
    "mL/min/{1.73m2}": "mL/min/{1.73_m2}",
    "公斤": "kg",  # kilogram in Chinese (gongjin), as a Chinese EDC or HIS prints it
    "千克": "kg",  # kilogram, the Chinese standard (GB 3100) name
    "g%": "g/dL",  # grams per 100 mL (haemoglobin in older and Asian reports)
    "g/100mL": "g/dL",  # UCUM g/(100.mL)
    "g/(100.mL)": "g/dL",
    "mU/mL": "m[IU]/mL",  # hCG as analysers print it
    "mU/L": "m[IU]/L",  # TSH
    "uU/mL": "u[IU]/mL",  # TSH (μU/mL, µU/mL fold onto it)
}


_COUNT_PER_L = _units(
    ("10*3/uL", _ONE, _ONE),
    ("10*3/mm3", _ONE, _ONE),
    ("K/uL", _ONE, _ONE),
    ("/uL", _ONE, Decimal(1000)),
    ("/mm3", _ONE, Decimal(1000)),
    ("cells/uL", _ONE, Decimal(1000)),
)
_PERCENT: dict[str, tuple[Decimal, Decimal]] = {}  # percent of leukocytes: "%" only
_ENZYME = _units(
    ("IU/L", _ONE, _ONE),
    ("ukat/L", Decimal(60), _ONE),
    ("nkat/L", Decimal(6), Decimal(100)),  # 1 nkat = 0.06 U (1 U = 1 umol/min)
)
_PROTEIN_G_PER_L = _units(
    ("mg/dL", _ONE, Decimal(100)), ("g/dL", Decimal(10), _ONE), ("mg/L", _ONE, Decimal(1000))
)

#: a viral load as a number of copies: UCUM {copies}/mL (an annotated 1/mL) and as sent
_COPIES = ("{copies}/mL", "copies/mL", "cp/mL")

#: LOINC code -> LOINC long common name, for every code of the catalogue
LOINC_NAMES: dict[str, str] = {
    # haemoglobin
    "718-7": "Hemoglobin [Mass/volume] in Blood",
    "20509-6": "Hemoglobin [Mass/volume] in Blood by calculation",
    "59260-0": "Hemoglobin [Moles/volume] in Blood",
    "30313-1": "Hemoglobin [Mass/volume] in Arterial blood",
    "30350-3": "Hemoglobin [Mass/volume] in Venous blood",
    "30351-1": "Hemoglobin [Mass/volume] in Mixed venous blood",
    "30352-9": "Hemoglobin [Mass/volume] in Capillary blood",
    "55782-7": "Hemoglobin [Mass/volume] in Blood by Oximetry",
    "75928-2": "Hemoglobin [Moles/volume] in Arterial blood",
    "93846-4": "Hemoglobin [Moles/volume] in Venous blood",
    "97550-8": "Hemoglobin [Mass/volume] in Central venous blood by calculation",
    # cell counts and differential percentages
    "751-8": "Neutrophils [#/volume] in Blood by Automated count",
    "753-4": "Neutrophils [#/volume] in Blood by Manual count",
    "26499-4": "Neutrophils [#/volume] in Blood",
    "770-8": "Neutrophils/100 leukocytes in Blood by Automated count",
    "23761-0": "Neutrophils/100 leukocytes in Blood by Manual count",
    "26511-6": "Neutrophils/100 leukocytes in Blood",
    "731-0": "Lymphocytes [#/volume] in Blood by Automated count",
    "732-8": "Lymphocytes [#/volume] in Blood by Manual count",
    "26474-7": "Lymphocytes [#/volume] in Blood",
    "736-9": "Lymphocytes/100 leukocytes in Blood by Automated count",
    "737-7": "Lymphocytes/100 leukocytes in Blood by Manual count",
    "26478-8": "Lymphocytes/100 leukocytes in Blood",
    "711-2": "Eosinophils [#/volume] in Blood by Automated count",
    "712-0": "Eosinophils [#/volume] in Blood by Manual count",
    "26449-9": "Eosinophils [#/volume] in Blood",
    "713-8": "Eosinophils/100 leukocytes in Blood by Automated count",
    "714-6": "Eosinophils/100 leukocytes in Blood by Manual count",
    "26450-7": "Eosinophils/100 leukocytes in Blood",
    "777-3": "Platelets [#/volume] in Blood by Automated count",
    "778-1": "Platelets [#/volume] in Blood by Manual count",
    "26515-7": "Platelets [#/volume] in Blood",
    "49497-1": "Platelets [#/volume] in Blood by Estimate",
    "97995-5": "Platelets [#/volume] in Blood by Automated count.optical",
    "13056-7": "Platelets [#/volume] in Plasma by Automated count",
    "26516-5": "Platelets [#/volume] in Plasma",
    "6690-2": "Leukocytes [#/volume] in Blood by Automated count",
    "804-5": "Leukocytes [#/volume] in Blood by Manual count",
    "26464-8": "Leukocytes [#/volume] in Blood",
    "49498-9": "Leukocytes [#/volume] in Blood by Estimate",
    # liver
    "1742-6": "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
    "1743-4": "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma "
    "by With P-5'-P",
    "1744-2": "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma "
    "by No addition of P-5'-P",
    "76625-3": "Alanine aminotransferase [Enzymatic activity/volume] in Blood",
    "77144-4": "Alanine aminotransferase [Enzymatic activity/volume] in Serum, Plasma or Blood",
    "1920-8": "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
    "30239-8": "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma "
    "by With P-5'-P",
    "27344-1": "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma "
    "by No addition of P-5'-P",
    "88112-8": "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma "
    "by No addition of P-5'-P",
    "6768-6": "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma",
    "1975-2": "Bilirubin.total [Mass/volume] in Serum or Plasma",
    "14631-6": "Bilirubin.total [Moles/volume] in Serum or Plasma",
    "42719-5": "Bilirubin.total [Mass/volume] in Blood",
    "54363-7": "Bilirubin.total [Moles/volume] in Blood",
    "59827-6": "Bilirubin.total [Mass/volume] in Arterial blood",
    "59828-4": "Bilirubin.total [Mass/volume] in Venous blood",
    "77137-8": "Bilirubin.total [Moles/volume] in Serum, Plasma or Blood",
    "89871-8": "Bilirubin.total [Moles/volume] in Venous blood",
    "89872-6": "Bilirubin.total [Moles/volume] in Arterial blood",
    "97770-2": "Bilirubin.total [Moles/volume] in Capillary blood",
    # kidney
    "2160-0": "Creatinine [Mass/volume] in Serum or Plasma",
    "14682-9": "Creatinine [Moles/volume] in Serum or Plasma",
    "38483-4": "Creatinine [Mass/volume] in Blood",
    "59826-8": "Creatinine [Moles/volume] in Blood",
    "21232-4": "Creatinine [Mass/volume] in Arterial blood",
    "101475-2": "Creatinine [Moles/volume] in Venous blood",
    "77140-2": "Creatinine [Moles/volume] in Serum, Plasma or Blood",
    "2164-2": "Creatinine renal clearance in 24 hour Urine and Serum or Plasma",
    "33558-8": "Creatinine renal clearance in Urine and Serum or Plasma collected for "
    "unspecified duration",
    "35591-7": "Creatinine renal clearance predicted by Cockcroft-Gault formula",
    "2890-2": "Protein/Creatinine [Mass Ratio] in Urine",
    # estimated glomerular filtration rate, normalised to 1.73 m2 of body surface (CTCAE
    # v5.0 grades Chronic kidney disease by eGFR or CrCl): every creatinine- or
    # creatinine-and-cystatin-C-based equation a laboratory reports under
    "33914-3": "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum "
    "or Plasma by Creatinine-based formula (MDRD)",
    "48642-3": "Glomerular filtration rate/1.73 sq M.predicted among non-blacks [Volume "
    "Rate/Area] in Serum or Plasma by Creatinine-based formula (MDRD)",
    "48643-1": "Glomerular filtration rate/1.73 sq M.predicted among blacks [Volume "
    "Rate/Area] in Serum or Plasma by Creatinine-based formula (MDRD)",
    "50044-7": "Glomerular filtration rate/1.73 sq M.predicted among females [Volume "
    "Rate/Area] in Serum, Plasma or Blood by Creatinine-based formula (MDRD)",
    "62238-1": "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, "
    "Plasma or Blood by Creatinine-based formula (CKD-EPI)",
    "88293-6": "Glomerular filtration rate/1.73 sq M.predicted among blacks [Volume "
    "Rate/Area] in Serum, Plasma or Blood by Creatinine-based formula (CKD-EPI)",
    "88294-4": "Glomerular filtration rate/1.73 sq M.predicted among non-blacks [Volume "
    "Rate/Area] in Serum, Plasma or Blood by Creatinine-based formula (CKD-EPI)",
    "98979-8": "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, "
    "Plasma or Blood by Creatinine-based formula (CKD-EPI 2021)",
    "98980-6": "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, "
    "Plasma or Blood by Creatinine and Cystatin C-based formula (CKD-EPI 2021)",
    "34366-5": "Protein/Creatinine [Ratio] in Urine",
    "13801-6": "Protein/Creatinine [Mass Ratio] in 24 hour Urine",
    "40486-3": "Protein/Creatinine [Ratio] in 24 hour Urine",
    "60678-0": "Protein/Creatinine [Mass Ratio] in 12 hour Urine",
    # body weight
    "29463-7": "Body weight",
    "3141-9": "Body weight Measured",
    "3142-7": "Body weight Stated",
    "8335-2": "Body weight Estimated",
    "8350-1": "Body weight Measured --with clothes",
    "8351-9": "Body weight Measured --without clothes",
    # immunoglobulins, complement
    "2465-3": "IgG [Mass/volume] in Serum or Plasma",
    "2458-8": "IgA [Mass/volume] in Serum or Plasma",
    "2472-9": "IgM [Mass/volume] in Serum or Plasma",
    "4485-9": "Complement C3 [Mass/volume] in Serum or Plasma",
    "4498-2": "Complement C4 [Mass/volume] in Serum or Plasma",
    # thyroid, pregnancy
    "3016-3": "Thyrotropin [Units/volume] in Serum or Plasma",
    "11580-8": "Thyrotropin [Units/volume] in Serum or Plasma by Detection limit <= 0.005 mIU/L",
    "11579-0": "Thyrotropin [Units/volume] in Serum or Plasma by Detection limit <= 0.05 mIU/L",
    "19080-1": "Choriogonadotropin [Units/volume] in Serum or Plasma",
    "21198-7": "Choriogonadotropin.beta subunit [Units/volume] in Serum or Plasma",
    "2106-3": "Choriogonadotropin (pregnancy test) [Presence] in Urine",
    "2118-8": "Choriogonadotropin (pregnancy test) [Presence] in Serum or Plasma",
    "2112-1": "Choriogonadotropin.beta subunit (pregnancy test) [Presence] in Urine",
    # viral serology and nucleic acids
    "7918-6": "HIV 1+2 Ab [Presence] in Serum",
    "7917-8": "HIV 1 Ab [Presence] in Serum",
    "31201-7": "HIV 1+2 Ab [Presence] in Serum or Plasma",
    "56888-1": "HIV 1+2 Ab+HIV1 p24 Ag [Presence] in Serum or Plasma by Immunoassay",
    "5221-7": "HIV 1 Ab [Presence] in Serum by Immunoblot",
    "68961-2": "HIV 1 Ab [Presence] in Serum or Plasma by Immunoassay",
    "16128-1": "Hepatitis C virus Ab [Presence] in Serum",
    "13955-0": "Hepatitis C virus Ab [Presence] in Serum or Plasma by Immunoassay",
    "40726-2": "Hepatitis C virus Ab [Presence] in Serum by Immunoblot",
    "11259-9": "Hepatitis C virus RNA [Presence] in Serum or Plasma by NAA with probe detection",
    "42595-9": "Hepatitis B virus DNA [Units/volume] in Serum or Plasma by NAA with probe "
    "detection",
    "29615-2": "Hepatitis B virus DNA [#/volume] (viral load) in Serum or Plasma by NAA with "
    "probe detection",
    "11011-4": "Hepatitis C virus RNA [Units/volume] (viral load) in Serum or Plasma by NAA "
    "with probe detection",
    "10676-5": "Hepatitis C virus RNA [Units/volume] (viral load) in Serum or Plasma by Probe "
    "with amplification",
    "5195-3": "Hepatitis B virus surface Ag [Presence] in Serum",
    "5196-1": "Hepatitis B virus surface Ag [Presence] in Serum or Plasma by Immunoassay",
    "16933-4": "Hepatitis B virus core Ab [Presence] in Serum",
    "13952-7": "Hepatitis B virus core Ab [Presence] in Serum or Plasma by Immunoassay",
    "71773-6": "Mycobacterium tuberculosis stimulated gamma interferon [Presence] in Blood",
    # assessments
    "88020-3": "Functional capacity NYHA",
}

ANALYTES: tuple[Analyte, ...] = (
    Analyte(
        "haemoglobin",
        (
            "718-7",
            "20509-6",
            "59260-0",
            "30313-1",
            "30350-3",
            "30351-1",
            "30352-9",
            "55782-7",
            "75928-2",
            "93846-4",
            "97550-8",
        ),
        "g/dL",
        _units(("g/L", _ONE, Decimal(10)), ("mmol/L", _ONE, Decimal("0.6206"))),
    ),
    Analyte("neutrophils", ("751-8", "753-4", "26499-4"), "10*9/L", _COUNT_PER_L),
    Analyte("lymphocytes", ("731-0", "732-8", "26474-7"), "10*9/L", _COUNT_PER_L),
    Analyte(
        "platelets",
        # 49497-1: the smear estimate when the analyser count is unreliable (clumps): a
        # result the physician acts on like a count
        ("777-3", "778-1", "26515-7", "49497-1", "97995-5", "13056-7", "26516-5"),
        "10*9/L",
        _COUNT_PER_L,
    ),
    Analyte("ALT", ("1742-6", "1743-4", "1744-2", "76625-3", "77144-4"), "U/L", _ENZYME),
    Analyte("AST", ("1920-8", "30239-8", "27344-1", "88112-8"), "U/L", _ENZYME),
    Analyte("alkaline phosphatase", ("6768-6",), "U/L", _ENZYME),
    Analyte(
        "total bilirubin",
        (
            "1975-2",
            "14631-6",
            "42719-5",
            "54363-7",
            "59827-6",
            "59828-4",
            "77137-8",
            "89871-8",
            "89872-6",
            "97770-2",
        ),
        "mg/dL",
        _units(("umol/L", _ONE, Decimal("17.1"))),
    ),
    Analyte(
        "creatinine",
        # not the --pre/--post dialysis codes (11041-1, 11042-9, 51619-5, 51620-3): a value
        # timed by dialysis is no measure of the subject's kidney function to grade
        ("2160-0", "14682-9", "38483-4", "59826-8", "21232-4", "101475-2", "77140-2"),
        "mg/dL",
        # mmol/L: the FHIR R4 example Bundle-ghp sends 14682-9 as 0.09 mmol/L
        _units(("umol/L", _ONE, Decimal("88.4")), ("mmol/L", Decimal(1000), Decimal("88.4"))),
    ),
    Analyte(
        "creatinine clearance",
        ("2164-2", "33558-8", "35591-7"),
        "mL/min",
        _units(("mL/s", Decimal(60), _ONE)),
    ),
    Analyte(
        "eGFR",
        (
            "33914-3",
            "48642-3",
            "48643-1",
            "50044-7",
            "62238-1",
            "88293-6",
            "88294-4",
            "98979-8",
            "98980-6",
        ),
        "mL/min/{1.73_m2}",
    ),
    Analyte("leukocytes", ("6690-2", "804-5", "26464-8", "49498-9"), "10*9/L", _COUNT_PER_L),
    Analyte(
        "body weight",
        ("29463-7", "3141-9", "3142-7", "8335-2", "8350-1", "8351-9"),
        "kg",
        _units(
            ("g", _ONE, Decimal(1000)),
            ("[lb_av]", Decimal("0.45359237"), _ONE),
            ("lb", Decimal("0.45359237"), _ONE),
        ),
    ),
    Analyte("IgG", ("2465-3",), "g/L", _PROTEIN_G_PER_L),
    Analyte("IgA", ("2458-8",), "g/L", _PROTEIN_G_PER_L),
    Analyte("IgM", ("2472-9",), "g/L", _PROTEIN_G_PER_L),
    Analyte("complement C3", ("4485-9",), "g/L", _PROTEIN_G_PER_L),
    Analyte("complement C4", ("4498-2",), "g/L", _PROTEIN_G_PER_L),
    Analyte("eosinophils", ("711-2", "712-0", "26449-9"), "10*9/L", _COUNT_PER_L),
    Analyte("neutrophils percent", ("770-8", "23761-0", "26511-6"), "%", _PERCENT),
    Analyte("lymphocytes percent", ("736-9", "737-7", "26478-8"), "%", _PERCENT),
    Analyte("eosinophils percent", ("713-8", "714-6", "26450-7"), "%", _PERCENT),
    Analyte("TSH", ("3016-3", "11580-8", "11579-0"), "m[IU]/L", _units(("u[IU]/mL", _ONE, _ONE))),
    Analyte(
        "urine protein/creatinine",
        ("2890-2", "34366-5", "13801-6", "40486-3", "60678-0"),
        "g/g",
        # mg/mmol: mg of protein per mmol of creatinine (113.12 g/mol, so 1 mmol is
        # 113.12 mg): x mg/mmol = x / 113.12 g/g (1 mg/mmol = 8.840 mg/g)
        _units(
            ("mg/g", _ONE, Decimal(1000)),
            ("mg/mg", _ONE, _ONE),
            ("mg/mmol", _ONE, Decimal("113.12")),
        ),
    ),
    Analyte(
        "hCG quantitative",
        ("19080-1", "21198-7"),
        "m[IU]/mL",
        _units(("[IU]/L", _ONE, _ONE), ("U/L", _ONE, _ONE), ("[IU]/mL", Decimal(1000), _ONE)),
    ),
    Analyte(
        "HBV DNA",
        # 29615-2 is the number of copies (copies/mL): no universal factor to IU/mL
        ("42595-9", "29615-2"),
        "[IU]/mL",
        {},
        unscaled_units=_COPIES,
    ),
    Analyte("hCG qualitative", ("2106-3", "2118-8", "2112-1"), "", scale="Ord"),
    Analyte(
        "HIV antibody",
        ("7918-6", "7917-8", "31201-7", "56888-1", "5221-7", "68961-2"),
        "",
        scale="Ord",
    ),
    Analyte("HCV antibody", ("16128-1", "13955-0", "40726-2"), "", scale="Ord"),
    Analyte("HCV RNA", ("11259-9",), "", scale="Ord"),
    Analyte("HBsAg", ("5196-1", "5195-3"), "", scale="Ord"),
    Analyte("anti-HBc", ("16933-4", "13952-7"), "", scale="Ord"),
    Analyte("TB IGRA", ("71773-6",), "", scale="Ord"),
    Analyte("NYHA class", ("88020-3",), "", scale="Ord"),
    # issue 15, codes and units: the quantitative HCV RNA (viral load) in IU/mL
    Analyte("HCV RNA quantitative", ("11011-4", "10676-5"), "[IU]/mL", {}, unscaled_units=_COPIES),
)

_BY_LOINC = {code: analyte for analyte in ANALYTES for code in analyte.loinc_codes}
_BY_NAME = {analyte.name: analyte for analyte in ANALYTES}
assert len(_BY_LOINC) == sum(len(a.loinc_codes) for a in ANALYTES), "a code in two analytes"
assert len(_BY_NAME) == len(ANALYTES), "two analytes of one name"
assert set(_BY_LOINC) == set(LOINC_NAMES), "every code, and only those, has its LOINC name"
for _analyte in ANALYTES:
    _ = _analyte._by_spelling  # two spellings of one analyte folding onto one key raise


def render_loinc_table() -> str:
    """``docs/loinc-codes.md``: every analyte with its codes, LOINC long common names,
    canonical unit and the units it accepts (a test keeps the file equal to this)."""
    lines = [
        "# LOINC codes Vigil reads",
        "",
        "Generated from `shared/analytes.py` (`python -m shared.analytes > docs/loinc-codes.md`);",
        "a test keeps this file equal to the catalogue. Codes follow LOINC's axes: every",
        "property (mass and substance concentration), system (blood, capillary, arterial and",
        "venous blood, serum, plasma, serum or plasma) and method (automated, manual,",
        "estimate, oximetry, calculation, with or without P-5'-P) under which a laboratory",
        "reports the analyte. A unit marked 'detection only' has no universal factor to the",
        "canonical unit: a value in it is judged only as zero or above zero.",
        "Source: LOINC, Regenstrief Institute (loinc.org), long common names.",
        "",
        "| Analyte | Scale | LOINC | Long common name | Canonical unit | Other units |",
        "|---|---|---|---|---|---|",
    ]
    for analyte in ANALYTES:
        others = ", ".join(
            [*analyte.conversions]
            + [
                sent
                for sent, ucum in UNIT_SPELLINGS.items()
                if ucum in (analyte.canonical_unit, *analyte.conversions)
            ]
            + [f"{unit} (detection only)" for unit in analyte.unscaled_units]
        )
        for code in analyte.loinc_codes:
            lines.append(
                f"| {analyte.name} | {analyte.scale} | {code} | {LOINC_NAMES[code]} | "
                f"{analyte.canonical_unit or '-'} | {others or '-'} |"
            )
    return "\n".join(lines) + "\n"


def analyte_named(name: str) -> Analyte:
    """The analyte of this catalogue name; ValueError naming the known ones if none."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(
            f"{name!r} is not in Vigil's analyte catalogue; known: {', '.join(_BY_NAME)}"
        ) from None


def codes_of(*names: str) -> tuple[str, ...]:
    """Every LOINC code of the named analytes, in catalogue order."""
    return tuple(code for name in names for code in analyte_named(name).loinc_codes)


# What a message or a derived event says instead of a unit Vigil does not recognise: a
# unit is sender text, and free text may carry anything, a name included.
UNIT_NOT_RECOGNISED = "(unit not recognised)"
# units Vigil's own rules give a derived value in, besides the catalogue's
DERIVED_UNITS = ("x ULN", "mg/day", "%")
_CATALOGUE_UNITS = (
    *DERIVED_UNITS,
    *(a.canonical_unit for a in ANALYTES if a.canonical_unit),
    *(unit for a in ANALYTES for unit in a.conversions),
    *(unit for a in ANALYTES for unit in a.unscaled_units),
)
_KNOWN_UNITS: dict[str, str] = {}
for _unit in (*_CATALOGUE_UNITS, *UNIT_SPELLINGS):
    # the first unit of a folded key wins (g/L before G/L): a key two units share is
    # shown as the first; each analyte still reads it its own way (Analyte.to_canonical)
    _KNOWN_UNITS.setdefault(normalise_unit(_unit), UNIT_SPELLINGS.get(_unit, _unit))
#: a spelling Vigil knows, sent exactly so, is shown as sent: ``G/L`` stays ``G/L`` (a
#: count in giga per litre, or grams per litre from an all-capitals system: only the
#: analyte tells, and the message shows the analyte beside it)
_EXACT_UNITS = {unit: unit for unit in (*_CATALOGUE_UNITS, *UNIT_SPELLINGS)}
#: folded keys that two catalogue units share; each analyte accepts at most one of them
SHARED_KEYS = frozenset(
    key
    for key in _KNOWN_UNITS
    if len(
        {
            UNIT_SPELLINGS.get(u, u)
            for u in (*_CATALOGUE_UNITS, *UNIT_SPELLINGS)
            if normalise_unit(u) == key
        }
    )
    > 1
)


def known_unit(unit: str | None) -> str | None:
    """The catalogue's spelling of ``unit`` when Vigil recognises it (``G/DL`` is
    ``g/dL``, ``gm/dL`` is ``g/dL``), else None."""
    if unit is None:
        return None
    return _EXACT_UNITS.get(unit.strip()) or _KNOWN_UNITS.get(normalise_unit(unit))


def shown_unit(unit: str | None) -> str:
    """``unit`` as a message or a derived event may show it: the catalogue's spelling of a
    unit Vigil recognises, :data:`UNIT_NOT_RECOGNISED` for any other text, "" for none.
    The unit as sent stays only in the reported result."""
    if unit is None:
        return ""
    return known_unit(unit) or UNIT_NOT_RECOGNISED


#: UCUM's bracketed special units as people write them (UCUM 4.3: brackets and braces
#: are for machines; the print form of m[IU]/mL is mIU/mL, of mm[Hg] mmHg)
_PRINTED_SPECIAL = {"IU": "IU", "iU": "IU", "Hg": "Hg", "pH": "pH", "HPF": "HPF", "LPF": "LPF"}
_SPECIAL_UNIT = re.compile(r"\[([A-Za-z]+)\]")
#: a power of ten as UCUM writes it ("10*9/L"), not inside a longer number
_UCUM_POWER = re.compile(r"(?<![\w.^*])(?:[x\u00d7] ?)?10\*(-?\d+)")


def units_for_people(text: str) -> str:
    """A text Vigil wrote (a value, a threshold, a data-quality detail) with every UCUM
    unit in it in the form a clinician reads: ``m[IU]/mL`` is ``mIU/mL``, ``[IU]/L`` is
    ``IU/L``, ``10*9/L`` is ``x10^9/L``. The one display form of units for every message;
    events keep UCUM."""
    text = _SPECIAL_UNIT.sub(lambda m: _PRINTED_SPECIAL.get(m.group(1), m.group(0)), text)
    return _UCUM_POWER.sub(r"x10^\1", text)


def analyte_for(loinc_code: str) -> Analyte | None:
    """The analyte with this LOINC code, or None when Vigil does not know it."""
    return _BY_LOINC.get(loinc_code)


#: the problem of a result for an analyte Vigil judges by its number that came as text
#: or a coded answer ("7,0", "7.0 g/dL", "see comment"): its rules cannot read it
NOT_A_NUMBER = (
    "{name} ({code}) was reported as text, not as a number, and Vigil judges it by its "
    "number: its protocol rules could not read it; ask the laboratory for the number"
)


def normalise_lab_result(
    result: LabResultReported,
) -> tuple[LabResultReported, str | None]:
    """The result with its canonical value and unit (or marked unmapped), and the
    data-quality problem, if any, that a data manager must see. The reported value, unit
    and coding are kept as they are."""
    analyte = analyte_for(result.loinc_code) if result.loinc_code else None
    if analyte is None:
        return result.model_copy(update={"unmapped": True}), None
    if analyte.scale != "Qn":
        return result, None  # judged by what it says, not by a number
    if result.value is None:
        if result.result_status.is_measurement:
            return result, NOT_A_NUMBER.format(name=analyte.name, code=result.loinc_code)
        return result, None
    if result.unit is None:
        return result, (
            f"{analyte.name} ({result.loinc_code}) was reported without a unit; "
            f"Vigil expects {analyte.canonical_unit}"
        )
    try:
        canonical = analyte.to_canonical(result.value, result.unit)
    except UnitNotConvertible as error:
        if analyte.unscaled(result.unit):
            # copies/mL for a viral load in IU/mL: kept as sent, no canonical value; the
            # detection rule reads it, a rule that needs the factor says it cannot
            return result, None
        return result, str(error)
    with localcontext() as context:
        # a conversion is exact decimal arithmetic (÷ 0.6206 gives 28 digits); the stored
        # JSON number holds about 15, so that is what the canonical value keeps
        context.prec = CANONICAL_DIGITS
        canonical = +canonical
    normalised = result.model_copy(
        update={"canonical_value": canonical, "canonical_unit": analyte.canonical_unit}
    )
    try:
        return LabResultReported.model_validate(normalised.model_dump()), None
    except ValidationError:
        # the reported value is within bounds, its conversion is not (x 60 for ukat/L)
        return result, (
            f"{analyte.name} ({result.loinc_code}) converted from {shown_unit(result.unit)} to "
            f"{analyte.canonical_unit} is outside the numbers Vigil can hold; kept as reported"
        )


if __name__ == "__main__":
    print(render_loinc_table(), end="")
