"""Reference-limit multiple: a result as a multiple of its laboratory's ULN or LLN (pure)."""

from __future__ import annotations

import uuid

from services.safety_rules.domain.conditions.grading import (
    _abnormal_baseline,
    _baseline_key,
    _lab_quantities,
    grade_of,
)
from services.safety_rules.domain.conditions.lab_values import (
    _candidates,
    _numeric,
    _ratio_to_limit,
    _sex_of,
)
from services.safety_rules.domain.conditions.points import (
    Judged,
    Problem,
    _censored,
    _each,
    _Judgement,
    _lab_point,
    _label,
    _num,
)
from services.safety_rules.domain.history import LabEntry, SubjectHistory
from services.safety_rules.domain.rule_kinds import ReferenceLimitRule
from services.safety_rules.domain.rule_terms import certainly
from shared.analytes import shown_unit


def _reference(
    rule: ReferenceLimitRule, history: SubjectHistory, only: set[uuid.UUID] | None = None
) -> Judged:
    def judge_entry(entry: LabEntry) -> _Judgement:
        problems: list[Problem] = []
        limit = _ratio_to_limit(
            entry, rule.limit, rule.fallback_limits, rule.id, problems, _sex_of(history)
        )
        if limit is None:
            return None, tuple(problems)
        comparator = entry.result.comparator
        value = entry.result.value
        assert value is not None
        holds = certainly(limit.ratio, comparator, rule.operator, rule.multiple)
        if holds is None:
            return None, (*problems, _censored(rule, entry, rule.describe()))
        grade = None
        if holds:  # only a finding is graded
            quantities = _lab_quantities(entry, value, history)
            quantities["uln" if rule.limit == "ULN" else "lln"] = limit.ratio
            grade = grade_of(
                rule.grading,
                quantities,
                comparator,
                abnormal_baseline=_abnormal_baseline(entry, history),
            )
        label = _label(entry)
        return _lab_point(
            rule,
            entry,
            holds=holds,
            grade=grade,
            value=value,
            unit=shown_unit(entry.result.unit),
            comparison=lambda: (
                f"{label}/{rule.limit} = {_num(limit.ratio)} "
                f"({rule.limit} {limit.limit_text}), rule {rule.describe()}"
            ),
            extra=lambda: {
                f"{label}/{rule.limit}": _num(limit.ratio),
                rule.limit: limit.limit_text,
            },
        ), tuple(problems)

    return _each(
        _numeric(_candidates(history, rule.loinc_codes, only)),
        lambda entry: (id(rule), _baseline_key(history, entry)),
        judge_entry,
    )
