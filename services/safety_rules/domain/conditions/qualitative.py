"""Qualitative and coded results: positive / negative / indeterminate findings, and coded
or text results matched by pattern (pure).
"""

from __future__ import annotations

import re
import uuid

from services.safety_rules.domain.conditions.lab_values import _candidates
from services.safety_rules.domain.conditions.points import Judged, Point, _label
from services.safety_rules.domain.history import SubjectHistory
from services.safety_rules.domain.rule_kinds import CodedResultRule, QualitativeRule
from shared.analytes import analyte_for


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
        sent = result.value_text or finding
        points.append(
            Point(
                at=result.collected_at,
                holds=finding in rule.results,
                input_ids=(entry.event_id,),
                analyte=_label(entry)
                if analyte_for(result.loinc_code or "")
                else (result.analyte_text or result.loinc_code or "test"),
                summary=f"{result.analyte_text or result.loinc_code} {sent}",
                computed={
                    "result": finding,
                    "reported": sent,
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
        points.append(
            Point(
                at=result.collected_at,
                holds=holds,
                input_ids=(entry.event_id,),
                analyte=result.analyte_text or result.loinc_code or "assessment",
                summary=f"{result.analyte_text or result.loinc_code} {sent}",
                computed={"reported": sent, "comparison": f"'{sent}': {rule.finding}"},
                learned_at=entry.recorded_at,
            )
        )
    return points, []
