"""Fallback reference limits: by analyte (every code of it), and by sex for transaminases."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from services.safety_rules.domain.rule_kinds import (
    AbsoluteThresholdRule,
    CreatinineClearanceRule,
    HysLawRule,
    ReferenceLimitRule,
)
from services.safety_rules.domain.rule_terms import FallbackLimit
from shared.analytes import codes_of

BY_SEX = {"female": 35, "male": 45, "unit": "U/L", "source": "a published interval"}


def reference_rule(**changes: Any) -> ReferenceLimitRule:
    fields: dict[str, Any] = {
        "id": "liver",
        "title": "AST above 3 x ULN",
        "source": "test",
        "kind": "reference_limit_multiple",
        "analytes": ["AST"],
        "limit": "ULN",
        "operator": ">",
        "multiple": 3,
        "fallback_limits": {"AST": BY_SEX},
    }
    fields.update(changes)
    return ReferenceLimitRule.model_validate(fields)


@pytest.mark.parametrize(
    ("sex", "limit", "expected"),
    [("F", "ULN", 35), ("M", "ULN", 45), ("U", "ULN", 35), ("O", "ULN", 35), (None, "ULN", 35)],
)
def test_a_limit_by_sex_is_the_subjects_or_the_lower_uln(
    sex: str | None, limit: str, expected: int
) -> None:
    fallback = FallbackLimit.model_validate(BY_SEX)
    assert fallback.for_sex(sex, "ULN")[0] == Decimal(expected)


def test_an_unknown_sex_takes_the_higher_lln() -> None:
    fallback = FallbackLimit.model_validate({**BY_SEX, "female": 1.5, "male": 2})
    assert fallback.for_sex("U", "LLN")[0] == Decimal(2)


def test_one_value_serves_every_sex() -> None:
    fallback = FallbackLimit.model_validate({"value": 40, "unit": "U/L", "source": "s"})
    assert fallback.for_sex("M", "ULN") == (Decimal(40), "")


@pytest.mark.parametrize(
    "fields",
    [
        {"female": 35, "unit": "U/L", "source": "s"},  # the male limit missing
        {"value": 40, "female": 35, "male": 45, "unit": "U/L", "source": "s"},  # both
        {"unit": "U/L", "source": "s"},  # none
    ],
)
def test_a_fallback_has_one_value_or_one_per_sex(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="fallback limit"):
        FallbackLimit.model_validate(fields)


def test_fallbacks_are_keyed_by_analyte_and_a_code_reads_as_its_analyte() -> None:
    rule = reference_rule(fallback_limits={"1920-8": BY_SEX})
    assert set(rule.fallback_limits) == {"AST"}
    assert "27344-1" in rule.loinc_codes  # every AST code is read, each gets the fallback


def test_a_fallback_for_an_analyte_vigil_does_not_know_is_refused() -> None:
    with pytest.raises(ValidationError, match="not in Vigil's analyte catalogue"):
        reference_rule(fallback_limits={"ASAT": BY_SEX})


def test_a_fallback_in_a_unit_the_analyte_cannot_take_is_refused() -> None:
    with pytest.raises(ValidationError, match="cannot convert"):
        reference_rule(fallback_limits={"AST": {**BY_SEX, "unit": "g/dL"}})


def test_clearance_and_hys_law_read_every_code_of_their_analytes() -> None:
    clearance = CreatinineClearanceRule.model_validate(
        {"id": "crcl", "title": "t", "source": "s", "kind": "creatinine_clearance",
         "operator": "<=", "threshold": 30}
    )  # fmt: skip
    assert clearance.creatinine_codes == codes_of("creatinine")
    assert "14682-9" in clearance.creatinine_codes
    assert "33558-8" in clearance.measured_codes
    assert "3141-9" in clearance.weight_codes
    bilirubin = {"value": 1.2, "unit": "mg/dL", "source": "s"}
    hys = HysLawRule.model_validate(
        {"id": "hy", "title": "t", "source": "s", "kind": "hys_law",
         "fallback_limits": {"ALT": BY_SEX, "total bilirubin": bilirubin}}
    )  # fmt: skip
    assert hys.transaminase_codes == codes_of("ALT", "AST")
    assert "14631-6" in hys.bilirubin_codes
    assert set(hys.fallback_limits) == {"ALT", "total bilirubin"}


def test_a_count_is_derived_from_every_code_of_the_named_percent_and_total() -> None:
    rule = AbsoluteThresholdRule.model_validate(
        {"id": "anc", "title": "t", "source": "s", "kind": "absolute_threshold",
         "analytes": ["neutrophils"], "operator": "<", "threshold": 1.5, "unit": "10*9/L",
         "derive_from_percent": [{"percent": "neutrophils percent", "total": "leukocytes"}]}
    )  # fmt: skip
    derivation = rule.derive_from_percent[0]
    assert derivation.percent_codes == codes_of("neutrophils percent")
    assert derivation.total_codes == codes_of("leukocytes")
    assert "23761-0" in rule.inputs()


def test_a_derivation_names_its_percent_once() -> None:
    with pytest.raises(ValidationError, match="not both"):
        AbsoluteThresholdRule.model_validate(
            {"id": "anc", "title": "t", "source": "s", "kind": "absolute_threshold",
             "analytes": ["neutrophils"], "operator": "<", "threshold": 1.5, "unit": "10*9/L",
             "derive_from_percent": [{"percent": "neutrophils percent", "percent_code": "770-8",
                                      "total": "leukocytes"}]}
        )  # fmt: skip
