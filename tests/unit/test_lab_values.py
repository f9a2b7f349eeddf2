"""How a lab result's number, unit and range read in its chart's table (pure): the number
always beside the unit it is in, at a sane precision."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.notifier.domain.lab_values import readable, shown_range, shown_value
from tests.support.lab_results import lab

D = Decimal


@pytest.mark.parametrize(
    ("number", "digits", "reads"),
    [
        (D("3.50877192982456"), 6, "3.50877"),
        (D("0.1988304093567251461988304094"), 6, "0.19883"),
        (D("3.50877192982456"), 3, "3.51"),
        (D("12.100"), 6, "12.1"),
        (D("1234567"), 6, "1234570"),
        (D("0"), 6, "0"),
        (D("7.251"), 20, "7.251"),  # never more than 6, never invented digits
    ],
)
def test_a_number_reads_with_at_most_six_significant_digits(
    number: Decimal, digits: int, reads: str
) -> None:
    assert readable(number, digits) == reads


def test_a_converted_result_reads_in_the_charts_unit_at_the_measured_precision() -> None:
    result = lab(
        1,
        "60",
        loinc_code="1975-2",
        unit="umol/L",
        canonical_value=D(60) / D("17.1"),
        canonical_unit="mg/dL",
        reference_low=D("3.4"),
        reference_high=D("20.5"),
    ).result

    assert shown_value(result, "mg/dL") == ("3.51", "mg/dL")
    assert shown_range(result, "mg/dL") == "0.199 to 1.199"


def test_a_result_that_cannot_be_converted_reads_in_its_own_unit() -> None:
    crp = lab(
        1,
        "1.2",
        loinc_code="1988-5",
        unit="mg/dL",
        canonical_value=None,
        canonical_unit=None,
        reference_low=None,
        reference_high=D("0.5"),
    ).result

    assert shown_value(crp, "mg/L") == ("1.2", "mg/dL")
    assert shown_range(crp, "mg/L") == "(none) to 0.5 mg/dL"


def test_a_result_without_a_canonical_value_reads_as_drawn() -> None:
    haemoglobin = lab(
        1, "4.5", loinc_code="718-7", unit="mmol/L", canonical_value=None, canonical_unit=None
    ).result

    assert shown_value(haemoglobin, "g/dL") == ("7.25", "g/dL")
