"""Issue 15, codes and units (the outside tester's findings): how unit spellings fold,
what ingest says of a viral load in copies/mL, and what a rule that needs a factor says of
one (never silent)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.safety_rules.adapters.rule_pack_files import load_rule_packs
from shared.analytes import analyte_named, normalise_lab_result, normalise_unit
from shared.events import DataQualityIssueRaised, LabResultReported
from shared.plausibility import implausible_value
from tests.support.rules_harness import InMemoryRulesStore, fact, run_batches
from tests.support.services import REPO

PACK = load_rule_packs(REPO / "studies")["NCT05262686"]


@pytest.mark.parametrize(
    ("sent", "ucum"),
    [
        ("\u00d710\u2079/L", "10*9/L"),  # multiplication sign, superscript nine
        ("10\u00b3/\u00b5L", "10*3/uL"),  # superscript three, micro sign
        ("10^3/mm^3", "10*3/mm3"),  # caret powers after a number and after a unit symbol
        ("10\u00b3/mm\u00b3", "10*3/mm3"),
        ("\uff47/\uff44\uff2c", "g/dL"),  # full-width letters of a Chinese input method
        ("mg/mg{creat}", "mg/mg"),  # UCUM: an annotation carries no meaning
        ("g/g{creat}", "g/g"),
    ],
)
def test_spellings_fold_onto_the_ucum_unit(sent: str, ucum: str) -> None:
    assert normalise_unit(sent) == normalise_unit(ucum)


def test_a_unit_power_is_not_read_into_a_number() -> None:
    """10*3/uL and 10*9/L stay apart: a caret power after a unit symbol is folded, a power
    of ten is not."""
    assert normalise_unit("10^3/uL") != normalise_unit("10^9/L")
    platelets = analyte_named("platelets")
    assert platelets.to_canonical(Decimal(49), "10^3/mm^3") == Decimal(49)
    assert platelets.to_canonical(Decimal(49), "\u00d710\u2079/L") == Decimal(49)


@pytest.mark.parametrize(
    ("name", "value", "unit", "expected"),
    [
        ("urine protein/creatinine", "113.12", "mg/mmol", "1"),  # creatinine 113.12 g/mol
        ("urine protein/creatinine", "0.6", "mg/mg{creat}", "0.6"),
        ("hCG quantitative", "1.5", "IU/mL", "1500"),
        ("hCG quantitative", "1500", "mU/mL", "1500"),
        ("haemoglobin", "7.5", "g%", "7.5"),
        ("haemoglobin", "7.5", "g/100mL", "7.5"),
        ("TSH", "12", "\u03bcU/mL", "12"),
        ("TSH", "12", "mU/L", "12"),
        ("body weight", "60", "\u516c\u65a4", "60"),
    ],
)
def test_spellings_convert_exactly(name: str, value: str, unit: str, expected: str) -> None:
    assert analyte_named(name).to_canonical(Decimal(value), unit) == Decimal(expected)


def _hbv(value: int, unit: str) -> LabResultReported:
    return LabResultReported.model_validate(
        {
            "study_id": "NCT05262686",
            "subject_id": "01-001",
            "loinc_code": "29615-2",
            "value": Decimal(value),
            "unit": unit,
            "collected_at": datetime(2026, 3, 2, 9, tzinfo=UTC),
            "source_message_id": "M1",
        }
    )


def test_a_viral_load_in_copies_is_kept_without_a_canonical_value() -> None:
    """copies/mL has no universal factor to IU/mL: ingest keeps the value as sent, raises
    nothing (the detection rule reads it), and gives it no canonical value."""
    normalised, problem = normalise_lab_result(_hbv(500, "copies/mL"))
    assert problem is None
    assert normalised.canonical_value is None
    _, problem = normalise_lab_result(_hbv(500, "copies per drop"))
    assert problem is not None
    assert "HBV DNA" in problem


def test_a_rule_needing_a_factor_says_it_cannot_judge_copies() -> None:
    """A threshold other than zero needs the copies-to-IU factor, which is assay-specific:
    the rule raises unit-not-convertible instead of passing the result over in silence."""
    rule = next(r for r in PACK.rules if r.id == "hbv-dna-detected")
    pack = PACK.model_copy(
        update={"rules": (rule.model_copy(update={"threshold": Decimal(2000)}),)}
    )
    lab = {"lab": {"loinc": "29615-2", "value": 5000, "unit": "copies/mL"}}
    outcomes = asyncio.run(
        run_batches(
            InMemoryRulesStore(), [[fact({"enrol": {}}, "01-001")], [fact(lab, "01-001")]], pack
        )
    )
    issues = [e.payload() for o in outcomes for e in o.data_quality]
    assert [i.issue for i in issues if isinstance(i, DataQualityIssueRaised)] == [
        "unit-not-convertible"
    ]
    assert not [s for o in outcomes for s in o.signals]


def test_a_negative_count_of_copies_is_implausible_not_undetected() -> None:
    """A negative viral load in copies/mL is impossible in any unit: a data-quality issue,
    never read as 'not detected'."""
    problem = implausible_value(_hbv(-5, "copies/mL"))
    assert problem is not None
    assert "HBV DNA" in problem
    assert implausible_value(_hbv(500, "copies/mL")) is None
