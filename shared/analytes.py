"""Lab analytes Vigil knows: LOINC codes, canonical UCUM units and unit conversions.

Both ingest (normalisation) and safety_rules (partners may publish straight to Kafka)
convert units, so the catalogue lives here. Conversions are exact decimal arithmetic.
"""

from __future__ import annotations

import functools
import re
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

    @cached_property
    def _by_spelling(self) -> dict[str, tuple[Decimal, Decimal]]:
        return {normalise_unit(unit): factors for unit, factors in self.conversions.items()}

    def to_canonical(self, value: Decimal, unit: str) -> Decimal:
        """Convert ``value`` given in ``unit`` to the canonical unit."""
        key = normalise_unit(unit)
        if key == normalise_unit(self.canonical_unit):
            return value
        try:
            multiply, divide = self._by_spelling[key]
        except KeyError:
            known = ", ".join([self.canonical_unit, *self.conversions])
            # the unit is sender text: named only when it is one Vigil knows
            given = known_unit(unit)
            reported = f"in {given}" if given else "in a unit Vigil does not recognise"
            raise UnitNotConvertible(
                f"{self.name} ({'/'.join(self.loinc_codes)}) reported {reported}, which "
                f"Vigil cannot convert to {self.canonical_unit}; convertible units: {known}"
            ) from None
        return value * multiply / divide


_SPACES = re.compile(r"\s+")


@functools.lru_cache(maxsize=4096)
def normalise_unit(unit: str) -> str:
    """Fold the spellings labs use for one unit into one key.

    UCUM codes are case-sensitive, but lab systems routinely send ``g/dl``, ``G/DL``,
    ``10^9/L``, ``x10E9/L`` or ``µmol/L``; none of the units in the catalogue collide
    when case is ignored, so matching folds case.
    """
    folded = _SPACES.sub("", unit).replace("µ", "u").replace("μ", "u").lower()
    folded = folded.replace("^", "*").replace("x10*", "10*").replace("x10e", "10*")
    folded = re.sub(r"^10e(\d)", r"10*\1", folded)
    return folded


_ONE = Decimal(1)


def _units(*pairs: tuple[str, Decimal, Decimal]) -> dict[str, tuple[Decimal, Decimal]]:
    return {unit: (mul, div) for unit, mul, div in pairs}


_COUNT_PER_L = _units(
    ("10*3/uL", _ONE, _ONE),
    ("10*3/mm3", _ONE, _ONE),
    ("K/uL", _ONE, _ONE),
    ("/uL", _ONE, Decimal(1000)),
    ("/mm3", _ONE, Decimal(1000)),
    ("cells/uL", _ONE, Decimal(1000)),
)
_ENZYME = _units(("IU/L", _ONE, _ONE), ("ukat/L", Decimal(60), _ONE))
_PROTEIN_G_PER_L = _units(("mg/dL", _ONE, Decimal(100)), ("g/dL", Decimal(10), _ONE))

ANALYTES: tuple[Analyte, ...] = (
    Analyte(
        "haemoglobin",
        ("718-7",),
        "g/dL",
        _units(("g/L", _ONE, Decimal(10)), ("mmol/L", _ONE, Decimal("0.6206"))),
    ),
    Analyte("neutrophils", ("751-8", "26499-4"), "10*9/L", _COUNT_PER_L),
    Analyte("lymphocytes", ("731-0",), "10*9/L", _COUNT_PER_L),
    Analyte("platelets", ("777-3",), "10*9/L", _COUNT_PER_L),
    Analyte("ALT", ("1742-6",), "U/L", _ENZYME),
    Analyte("AST", ("1920-8",), "U/L", _ENZYME),
    Analyte("alkaline phosphatase", ("6768-6",), "U/L", _ENZYME),
    Analyte("total bilirubin", ("1975-2",), "mg/dL", _units(("umol/L", _ONE, Decimal("17.1")))),
    Analyte("creatinine", ("2160-0",), "mg/dL", _units(("umol/L", _ONE, Decimal("88.4")))),
    Analyte("creatinine clearance", ("2164-2",), "mL/min", _units(("mL/s", Decimal(60), _ONE))),
    Analyte("leukocytes", ("6690-2",), "10*9/L", _COUNT_PER_L),
    Analyte(
        "body weight",
        ("29463-7", "3141-9"),
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
    Analyte("eosinophils", ("711-2",), "10*9/L", _COUNT_PER_L),
    Analyte("TSH", ("3016-3",), "m[IU]/L", _units(("u[IU]/mL", _ONE, _ONE))),
    Analyte(
        "urine protein/creatinine",
        ("2890-2",),
        "g/g",
        _units(("mg/g", _ONE, Decimal(1000)), ("mg/mg", _ONE, _ONE)),
    ),
    Analyte("hCG quantitative", ("19080-1",), "m[IU]/mL", _units(("[IU]/L", _ONE, _ONE))),
    Analyte("HBV DNA", ("42595-9",), "[IU]/mL", {}),
    Analyte("hCG qualitative", ("2106-3", "2118-8", "2112-1"), "", scale="Ord"),
    Analyte("HIV antibody", ("7918-6", "7917-8"), "", scale="Ord"),
    Analyte("HCV antibody", ("16128-1", "13955-0", "40726-2"), "", scale="Ord"),
    Analyte("HCV RNA", ("11259-9",), "", scale="Ord"),
    Analyte("HBsAg", ("5196-1",), "", scale="Ord"),
    Analyte("anti-HBc", ("16933-4",), "", scale="Ord"),
    Analyte("TB IGRA", ("71773-6",), "", scale="Ord"),
    Analyte("NYHA class", ("88020-3",), "", scale="Ord"),
)

_BY_LOINC = {code: analyte for analyte in ANALYTES for code in analyte.loinc_codes}
_BY_NAME = {analyte.name: analyte for analyte in ANALYTES}
assert len(_BY_LOINC) == sum(len(a.loinc_codes) for a in ANALYTES), "a code in two analytes"
assert len(_BY_NAME) == len(ANALYTES), "two analytes of one name"


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
_KNOWN_UNITS = {
    normalise_unit(unit): unit
    for unit in (
        *DERIVED_UNITS,
        *(a.canonical_unit for a in ANALYTES if a.canonical_unit),
        *(unit for a in ANALYTES for unit in a.conversions),
    )
}


def known_unit(unit: str | None) -> str | None:
    """The catalogue's spelling of ``unit`` when Vigil recognises it (``G/DL`` is
    ``g/dL``), else None."""
    return None if unit is None else _KNOWN_UNITS.get(normalise_unit(unit))


def shown_unit(unit: str | None) -> str:
    """``unit`` as a message or a derived event may show it: the catalogue's spelling of a
    unit Vigil recognises, :data:`UNIT_NOT_RECOGNISED` for any other text, "" for none.
    The unit as sent stays only in the reported result."""
    if unit is None:
        return ""
    return known_unit(unit) or UNIT_NOT_RECOGNISED


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
