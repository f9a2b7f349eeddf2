"""A censored value ('<0.5', '>7') is judged as what it says: a condition holds only when
every value it allows meets it, fails when none does, and is left open otherwise; it is
graded only as far as it is certain (issue 14)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.safety_rules.domain.conditions import grade_of
from services.safety_rules.domain.rule_terms import Band, Grading, certainly

D = Decimal


@pytest.mark.parametrize(
    ("value", "comparator", "operator", "bound", "expected"),
    [
        ("7", ">", ">=", "5", True),  # '>7' meets '>= 5'
        ("7", ">", "<=", "9", None),  # '>7' may or may not meet '<= 9'
        ("9", ">", "<=", "9", False),
        ("9", ">=", "<=", "9", None),  # it may be exactly 9
        ("9", ">=", ">=", "9", True),
        ("0.5", "<", "<", "1.0", True),  # '<0.5' meets '< 1.0'
        ("0.5", "<", "<", "0.5", True),
        ("0.5", "<=", "<", "0.5", None),
        ("0.5", "<", ">", "0.5", False),
        ("0.5", "<", ">", "0.3", None),
        ("8", None, "<=", "9", True),
        ("10", None, "<=", "9", False),
    ],
)
def test_a_censored_value_meets_a_condition_only_when_every_value_it_allows_does(
    value: str, comparator: str | None, operator: str, bound: str, expected: bool | None
) -> None:
    assert certainly(D(value), comparator, operator, D(bound)) is expected  # type: ignore[arg-type]


NEUTROPENIA = Grading(
    term="Neutrophil count decreased",
    bands=(
        Band(grade=4, operator="<", bound=D("0.5")),
        Band(grade=3, operator="<", bound=D("1.0")),
        Band(grade=2, operator="<", bound=D("1.5")),
    ),
)


@pytest.mark.parametrize(
    ("value", "comparator", "grade"),
    [
        ("0.5", "<", 4),  # every value below 0.5 is grade 4
        ("1.2", "<", 2),  # below 1.2: grade 2 at least, maybe 3 or 4: graded 2
        ("0.9", None, 3),
        ("0.5", ">", None),  # above 0.5: no grade is certain
    ],
)
def test_a_censored_value_is_graded_only_as_far_as_it_is_certain(
    value: str, comparator: str | None, grade: int | None
) -> None:
    assert grade_of(NEUTROPENIA, {"value": D(value)}, comparator) == grade
