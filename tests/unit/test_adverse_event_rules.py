"""The adverse event rule model: what a rule pack may say about the events it watches."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.safety_rules.domain.event_rule_kinds import AdverseEventRule


def _rule(**changes: object) -> AdverseEventRule:
    fields: dict[str, object] = {
        "id": "x",
        "title": "X",
        "source": "test",
        "kind": "adverse_event",
        "criterion": "named-event",
        "term_patterns": ["x"],
    }
    return AdverseEventRule.model_validate({**fields, **changes})


def test_a_named_event_rule_without_a_pattern_or_code_is_refused() -> None:
    with pytest.raises(ValidationError, match="needs term_patterns or MedDRA codes"):
        _rule(term_patterns=[])


def test_an_exclusion_that_does_not_compile_is_refused() -> None:
    with pytest.raises(ValidationError, match="term pattern"):
        _rule(term_exclusions=["(unclosed"])


def test_a_minimum_grade_outside_ctcae_is_refused() -> None:
    with pytest.raises(ValidationError, match="min_grade"):
        _rule(min_grade=6)


def test_a_graded_rule_says_its_grade() -> None:
    assert _rule(min_grade=3, title="Infusion reaction (IRR)").describe() == (
        "adverse event: infusion reaction (IRR), CTCAE grade >= 3"
    )
