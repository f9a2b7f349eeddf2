"""Condition kinds: from a subject's history, the points in clinical time where a rule was
judged, each saying whether the condition held, how bad it was, and on which facts (pure).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from services.safety_rules.domain.conditions.absolute_threshold import judge_absolute_threshold
from services.safety_rules.domain.conditions.adverse_events import judge_adverse_event
from services.safety_rules.domain.conditions.baseline_change import judge_change_from_baseline
from services.safety_rules.domain.conditions.creatinine_clearance import (
    creatinine_clearance_cockcroft_gault,
    judge_creatinine_clearance,
)
from services.safety_rules.domain.conditions.grading import grade_of
from services.safety_rules.domain.conditions.hys_law import judge_hys_law
from services.safety_rules.domain.conditions.lab_values import value_in
from services.safety_rules.domain.conditions.medications import judge_medication
from services.safety_rules.domain.conditions.points import Judged, LazyMapping, Point, Problem
from services.safety_rules.domain.conditions.qualitative import (
    judge_coded_result,
    judge_qualitative_result,
)
from services.safety_rules.domain.conditions.reference_limit import judge_reference_limit
from services.safety_rules.domain.event_rule_kinds import AdverseEventRule, MedicationRule
from services.safety_rules.domain.history import SubjectHistory
from services.safety_rules.domain.rule_kinds import (
    AbsoluteThresholdRule,
    BaselineChangeRule,
    CodedResultRule,
    CreatinineClearanceRule,
    HysLawRule,
    QualitativeRule,
    ReferenceLimitRule,
    Rule,
)
from services.safety_rules.domain.rule_terms import surely_holds

__all__ = [
    "Judged",
    "LazyMapping",
    "Point",
    "Problem",
    "creatinine_clearance_cockcroft_gault",
    "entrywise",
    "grade_of",
    "judge",
    "judge_absolute_threshold",
    "judge_adverse_event",
    "judge_change_from_baseline",
    "judge_coded_result",
    "judge_creatinine_clearance",
    "judge_hys_law",
    "judge_medication",
    "judge_qualitative_result",
    "judge_reference_limit",
    "surely_holds",
    "value_in",
]


def judge(rule: Rule, history: SubjectHistory, only: set[uuid.UUID] | None = None) -> Judged:
    """The points of ``rule`` over the whole of ``history``."""
    if only is not None:
        return _ENTRYWISE[type(rule)](rule, history, only)
    return _KINDS[type(rule)](rule, history)


_KINDS: dict[type, Callable[[Any, SubjectHistory], Judged]] = {
    AbsoluteThresholdRule: judge_absolute_threshold,
    ReferenceLimitRule: judge_reference_limit,
    BaselineChangeRule: judge_change_from_baseline,
    CreatinineClearanceRule: judge_creatinine_clearance,
    HysLawRule: judge_hys_law,
    AdverseEventRule: judge_adverse_event,
    MedicationRule: judge_medication,
    QualitativeRule: judge_qualitative_result,
    CodedResultRule: judge_coded_result,
}

# kinds whose points depend on each entry alone (and on the baseline, which a later entry
# cannot change): the engine may judge just the new entries of a batch
_ENTRYWISE: dict[type, Callable[[Any, SubjectHistory, set[uuid.UUID]], Judged]] = {
    AbsoluteThresholdRule: judge_absolute_threshold,
    ReferenceLimitRule: judge_reference_limit,
    BaselineChangeRule: judge_change_from_baseline,
    QualitativeRule: judge_qualitative_result,
    CodedResultRule: judge_coded_result,
    HysLawRule: judge_hys_law,  # a window looks back only: a later entry changes no earlier point
    CreatinineClearanceRule: judge_creatinine_clearance,
}


def entrywise(rule: Rule, history: SubjectHistory, new_facts: set[uuid.UUID]) -> bool:
    """Whether these new facts leave the points of every earlier entry of this rule as they
    were. Not so when a count is derived from two results (a late total changes a
    percentage's point), nor when a new weight may be the one nearest to an earlier
    creatinine."""
    if isinstance(rule, AbsoluteThresholdRule) and rule.derive_from_percent:
        # a derived count pairs a percentage with the total of the same specimen: a new
        # one of either may change an earlier point; a new count of the rule's own
        # analyte (the common case) changes none
        derived = {
            code for d in rule.derive_from_percent for code in (*d.percent_codes, *d.total_codes)
        }
        return not _any_of(history, new_facts, derived)
    if isinstance(rule, CreatinineClearanceRule):
        return not _any_of(history, new_facts, set(rule.weight_codes))
    return type(rule) in _ENTRYWISE


def _any_of(history: SubjectHistory, new_facts: set[uuid.UUID], codes: set[str]) -> bool:
    """Whether any of the new facts is a current result of one of ``codes``."""
    return any(
        (entry := history.labs.get(event_id)) is not None and entry.result.loinc_code in codes
        for event_id in new_facts
    )
