"""Reference-limit multiple: a result as a multiple of its laboratory's ULN or LLN (pure)."""

from __future__ import annotations

import uuid

from services.safety_rules.domain.conditions.grading import (
    baseline_key,
    grade_of,
    has_abnormal_baseline,
    lab_quantities,
)
from services.safety_rules.domain.conditions.lab_values import (
    candidate_results,
    numeric_results,
    ratio_to_limit,
    sex_of,
)
from services.safety_rules.domain.conditions.points import (
    EntryJudgement,
    Judged,
    Problem,
    analyte_label,
    censored_problem,
    judge_each_entry,
    lab_point,
    shown_number,
)
from services.safety_rules.domain.history import LabEntry, SubjectHistory
from services.safety_rules.domain.rule_kinds import ReferenceLimitRule
from services.safety_rules.domain.rule_terms import certainly
from shared.analytes import shown_unit


def judge_reference_limit(
    rule: ReferenceLimitRule, history: SubjectHistory, only: set[uuid.UUID] | None = None
) -> Judged:
    """Whether each result of the rule's analytes, as a multiple of its laboratory's ULN or
    LLN (a limit by the subject's sex, or the pack's fallback when none was sent, which is a
    data-quality problem), meets the rule's multiple (``ALT > 3 x ULN``), graded by CTCAE
    bands on that multiple. ``only`` judges just those new results."""

    def judge_entry(entry: LabEntry) -> EntryJudgement:
        problems: list[Problem] = []
        limit = ratio_to_limit(
            entry, rule.limit, rule.fallback_limits, rule.id, problems, sex_of(history)
        )
        if limit is None:
            return None, tuple(problems)
        comparator = entry.result.comparator
        value = entry.result.value
        assert value is not None
        holds = certainly(limit.ratio, comparator, rule.operator, rule.multiple)
        if holds is None:
            return None, (*problems, censored_problem(rule, entry, rule.describe()))
        grade = None
        if holds:  # only a finding is graded
            quantities = lab_quantities(entry, value, history)
            quantities["uln" if rule.limit == "ULN" else "lln"] = limit.ratio
            grade = grade_of(
                rule.grading,
                quantities,
                comparator,
                abnormal_baseline=has_abnormal_baseline(entry, history),
            )
        label = analyte_label(entry)
        return lab_point(
            rule,
            entry,
            holds=holds,
            grade=grade,
            value=value,
            unit=shown_unit(entry.result.unit),
            comparison=lambda: (
                f"{label}/{rule.limit} = {shown_number(limit.ratio)} "
                f"({rule.limit} {limit.limit_text}), rule {rule.describe()}"
            ),
            extra=lambda: {
                f"{label}/{rule.limit}": shown_number(limit.ratio),
                rule.limit: limit.limit_text,
            },
        ), tuple(problems)

    return judge_each_entry(
        numeric_results(candidate_results(history, rule.loinc_codes, only)),
        lambda entry: (id(rule), baseline_key(history, entry)),
        judge_entry,
    )
