from decimal import Decimal

import pytest

from shared.analytes import UnitNotConvertible, analyte_for, normalise_unit


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        ("9", "g/dL", "9"),
        ("90", "g/L", "9"),
        ("85", "g/l", "8.5"),
        ("6.206", "mmol/L", "10"),
        ("12.1", "G/DL", "12.1"),
    ],
)
def test_haemoglobin_converts_to_g_per_dl(value: str, unit: str, expected: str) -> None:
    analyte = analyte_for("718-7")
    assert analyte is not None
    assert analyte.to_canonical(Decimal(value), unit) == Decimal(expected)


@pytest.mark.parametrize(
    ("loinc", "value", "unit", "expected"),
    [
        ("751-8", "1500", "/uL", "1.5"),
        ("751-8", "1.2", "10^3/uL", "1.2"),
        ("26499-4", "800", "cells/uL", "0.8"),
        ("1742-6", "0.5", "ukat/L", "30"),
        ("1975-2", "34.2", "umol/L", "2"),
        ("1975-2", "34.2", "µmol/L", "2"),
        ("2160-0", "88.4", "umol/L", "1"),
        ("2164-2", "0.5", "mL/s", "30"),
        ("2465-3", "1200", "mg/dL", "12"),
    ],
)
def test_domain_conversions(loinc: str, value: str, unit: str, expected: str) -> None:
    analyte = analyte_for(loinc)
    assert analyte is not None
    assert analyte.to_canonical(Decimal(value), unit) == Decimal(expected)


def test_unconvertible_unit_names_analyte_unit_and_alternatives() -> None:
    analyte = analyte_for("718-7")
    assert analyte is not None
    with pytest.raises(UnitNotConvertible) as raised:
        analyte.to_canonical(Decimal(9), "%")
    message = str(raised.value)
    assert "haemoglobin" in message
    assert "'%'" in message
    assert "g/L" in message


def test_unknown_loinc_is_none() -> None:
    assert analyte_for("99999-9") is None


@pytest.mark.parametrize(
    ("spelling", "same_as"),
    [("10^9/L", "10*9/L"), ("x10E9/L", "10*9/L"), ("μmol/L", "umol/L"), (" g / dL ", "g/dL")],
)
def test_unit_spellings_fold_together(spelling: str, same_as: str) -> None:
    assert normalise_unit(spelling) == normalise_unit(same_as)
