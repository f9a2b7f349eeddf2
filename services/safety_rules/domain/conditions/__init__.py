"""Condition kinds: from a subject's history, the points in clinical time where a rule was
judged, each saying whether the condition held, how bad it was, and on which facts (pure).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from services.safety_rules.domain.conditions.absolute_threshold import _absolute
from services.safety_rules.domain.conditions.adverse_events import _adverse
from services.safety_rules.domain.conditions.baseline_change import _change
from services.safety_rules.domain.conditions.creatinine_clearance import _clearance
from services.safety_rules.domain.conditions.grading import grade_of
from services.safety_rules.domain.conditions.hys_law import _hys_law
from services.safety_rules.domain.conditions.lab_values import value_in
from services.safety_rules.domain.conditions.medications import _medication
from services.safety_rules.domain.conditions.points import Judged, LazyMapping, Point, Problem
from services.safety_rules.domain.conditions.qualitative import _coded, _qualitative
from services.safety_rules.domain.conditions.reference_limit import _reference
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
    "entrywise",
    "grade_of",
    "judge",
    "surely_holds",
    "value_in",
]


def judge(rule: Rule, history: SubjectHistory, only: set[uuid.UUID] | None = None) -> Judged:
    """The points of ``rule`` over the whole of ``history``."""
    if only is not None:
        return _ENTRYWISE[type(rule)](rule, history, only)
    return _KINDS[type(rule)](rule, history)


_KINDS: dict[type, Callable[[Any, SubjectHistory], Judged]] = {
    AbsoluteThresholdRule: _absolute,
    ReferenceLimitRule: _reference,
    BaselineChangeRule: _change,
    CreatinineClearanceRule: _clearance,
    HysLawRule: _hys_law,
    AdverseEventRule: _adverse,
    MedicationRule: _medication,
    QualitativeRule: _qualitative,
    CodedResultRule: _coded,
}

# kinds whose points depend on each entry alone (and on the baseline, which a later entry
# cannot change): the engine may judge just the new entries of a batch
_ENTRYWISE: dict[type, Callable[[Any, SubjectHistory, set[uuid.UUID]], Judged]] = {
    AbsoluteThresholdRule: _absolute,
    ReferenceLimitRule: _reference,
    BaselineChangeRule: _change,
    QualitativeRule: _qualitative,
    CodedResultRule: _coded,
    HysLawRule: _hys_law,  # a window looks back only: a later entry changes no earlier point
    CreatinineClearanceRule: _clearance,
}


def entrywise(rule: Rule, history: SubjectHistory, new_facts: set[uuid.UUID]) -> bool:
    """Whether these new facts leave the points of every earlier entry of this rule as they
    were. Not so when a count is derived from two results (a late total changes a
    percentage's point), nor when a new weight may be the one nearest to an earlier
    creatinine."""
    if isinstance(rule, AbsoluteThresholdRule) and rule.derive_from_percent:
        return False
    if isinstance(rule, CreatinineClearanceRule):
        weights = set(rule.weight_codes)
        return not any(
            (entry := history.labs.get(event_id)) is not None and entry.result.loinc_code in weights
            for event_id in new_facts
        )
    return type(rule) in _ENTRYWISE
