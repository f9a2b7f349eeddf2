from decimal import Decimal

import pytest

from shared.analytes import (
    UNIT_NOT_RECOGNISED,
    UnitNotConvertible,
    analyte_for,
    known_unit,
    normalise_unit,
    shown_unit,
)


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
    assert "reported in %," in message  # a unit Vigil recognises, named
    assert "g/L" in message


def test_an_unrecognised_unit_is_not_quoted_in_the_problem() -> None:
    """A unit is sender text: the problem says it was not recognised, not what it was."""
    analyte = analyte_for("718-7")
    assert analyte is not None
    with pytest.raises(UnitNotConvertible) as raised:
        analyte.to_canonical(Decimal(9), "Quarrington")
    message = str(raised.value)
    assert "Quarrington" not in message
    assert "a unit Vigil does not recognise" in message
    assert "g/L" in message


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("g/dL", "g/dL"),
        ("G/DL", "g/dL"),  # the catalogue's spelling, not the sender's
        ("x10^9/L", "10*9/L"),
        ("µmol/L", "umol/L"),
        ("x ULN", "x ULN"),
        ("Quarrington1234", UNIT_NOT_RECOGNISED),
        ("g/dL Mr Smith", UNIT_NOT_RECOGNISED),
        (None, ""),
    ],
)
def test_only_a_unit_vigil_recognises_is_shown(sent: str | None, shown: str) -> None:
    assert shown_unit(sent) == shown
    assert known_unit(sent) == (shown if shown not in ("", UNIT_NOT_RECOGNISED) else None)


def test_unknown_loinc_is_none() -> None:
    assert analyte_for("99999-9") is None


@pytest.mark.parametrize(
    ("spelling", "same_as"),
    [("10^9/L", "10*9/L"), ("x10E9/L", "10*9/L"), ("μmol/L", "umol/L"), (" g / dL ", "g/dL")],
)
def test_unit_spellings_fold_together(spelling: str, same_as: str) -> None:
    assert normalise_unit(spelling) == normalise_unit(same_as)
