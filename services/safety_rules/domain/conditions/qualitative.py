"""Qualitative and coded results: positive / negative / indeterminate findings, and coded
or text results matched by pattern (pure).

A result's text (its analyte as sent, its value as sent) is sender free text and may carry
anything, a name included: a point names the test by Vigil's catalogue or its LOINC code
and says what was found in Vigil's words, never quoting that text.
"""

from __future__ import annotations

import re
import uuid

from services.safety_rules.domain.conditions.lab_values import _candidates
from services.safety_rules.domain.conditions.points import Judged, Point, _label
from services.safety_rules.domain.history import LabEntry, SubjectHistory
from services.safety_rules.domain.rule_kinds import CodedResultRule, QualitativeRule
from shared.analytes import analyte_for


def _test_name(entry: LabEntry, otherwise: str) -> str:
    """The test in Vigil's words: its catalogue name or its LOINC code."""
    if analyte_for(entry.result.loinc_code or ""):
        return _label(entry)
    return entry.result.loinc_code or otherwise


def _qualitative(
    rule: QualitativeRule, history: SubjectHistory, only: set[uuid.UUID] | None = None
) -> Judged:
    points: list[Point] = []
    for entry in _candidates(history, rule.loinc_codes, only):
        result = entry.result
        finding = result.qualitative
        flags = {flag.upper() for flag in result.abnormal_flags}
        if finding is None and flags & {"A", "AA", "H", "HH", "POS"}:
            finding = "positive"  # the laboratory flagged it abnormal
        if finding is None:
            continue
        name = _test_name(entry, "test")
        points.append(
            Point(
                at=result.collected_at,
                holds=finding in rule.results,
                input_ids=(entry.event_id,),
                analyte=name,
                summary=f"{name} {finding}",
                computed={
                    "result": finding,
                    "comparison": f"{finding}; rule fires on {rule.describe()}",
                },
                learned_at=entry.recorded_at,
            )
        )
    return points, []


def _coded(
    rule: CodedResultRule, history: SubjectHistory, only: set[uuid.UUID] | None = None
) -> Judged:
    points: list[Point] = []
    for entry in _candidates(history, rule.loinc_codes, only):
        result = entry.result
        sent = result.value_text or (f"{result.value:f}" if result.value is not None else "")
        if not sent:
            continue
        holds = any(re.search(pattern, sent, re.IGNORECASE) for pattern in rule.patterns)
        said = rule.finding if holds else "the reported result matches none of the rule's patterns"
        name = _test_name(entry, "assessment")
        points.append(
            Point(
                at=result.collected_at,
                holds=holds,
                input_ids=(entry.event_id,),
                analyte=name,
                summary=f"{name}: {said}",
                computed={"comparison": f"{said} (the text as sent is in the result)"},
                learned_at=entry.recorded_at,
            )
        )
    return points, []
