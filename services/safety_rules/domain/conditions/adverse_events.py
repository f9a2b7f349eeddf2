"""Adverse events: serious, by MedDRA code or term, serious infections, NYHA class (pure)."""

from __future__ import annotations

import functools
import re
from typing import Any

from services.safety_rules.domain.conditions.points import Judged, Point
from services.safety_rules.domain.event_rule_kinds import AdverseEventRule
from services.safety_rules.domain.history import SubjectHistory
from shared.adverse_event_labels import adverse_event_label


def _matches(rule: AdverseEventRule, text: str, *codes: str | None) -> bool:
    if any(code and code in (*rule.system_organ_class_codes, *rule.meddra_codes) for code in codes):
        return True
    return any(re.search(pattern, text, re.IGNORECASE) for pattern in rule.term_patterns)


def _adverse(rule: AdverseEventRule, history: SubjectHistory) -> Judged:
    points: list[Point] = []
    for ae_id, entry in sorted(history.adverse_events.items()):
        report = entry.report
        text = " ".join(filter(None, (report.term, report.system_organ_class)))
        if rule.criterion == "serious":
            holds = report.serious
        elif rule.criterion == "serious-infection":
            holds = report.serious and _matches(
                rule, text, report.system_organ_class_code, report.meddra_code
            )
        elif rule.criterion == "nyha-class":
            holds = report.nyha_class in rule.nyha_classes or (
                bool(rule.term_patterns) and _matches(rule, text, report.meddra_code)
            )
        else:
            holds = _matches(rule, text, report.system_organ_class_code, report.meddra_code)
        if rule.require_serious:
            holds = holds and report.serious
        criteria = ", ".join(report.seriousness_criteria) or (
            "serious" if report.serious else "not serious"
        )
        # the verbatim term and organ-class text are free text that may identify the
        # subject: the signal (and every message made of it) says it in Vigil's words
        label = adverse_event_label(
            serious=report.serious,
            criteria=report.seriousness_criteria,
            meddra_code=report.meddra_code,
            nyha_class=report.nyha_class,
        )
        computed: dict[str, Any] = {
            "seriousness": criteria,
            "onset": report.onset.isoformat(),
            "ae_id": ae_id,
        }
        for key, value in (
            ("meddra_code", report.meddra_code),
            ("system_organ_class_code", report.system_organ_class_code),
            ("nyha_class", report.nyha_class),
            ("severity", report.severity),
            ("outcome", report.outcome),
        ):
            if value:
                computed[key] = value
        base = functools.partial(
            Point,
            input_ids=(entry.event_id,),
            analyte=label,
            episode_key=f"ae:{ae_id}",
            learned_at=entry.serious_since or entry.recorded_at,
            serious=report.serious,
        )
        points.append(
            base(
                at=report.onset,
                holds=holds,
                grade=report.ctcae_grade,
                summary=f"adverse event {ae_id} ({criteria})",
                computed={**computed, "comparison": f"{label}; rule {rule.describe()}"},
            )
        )
        if holds and report.end is not None:
            points.append(
                base(
                    at=report.end,
                    holds=False,
                    summary=f"adverse event {ae_id} ended ({report.outcome})",
                    computed={"end": report.end.isoformat()},
                )
            )
    return points, []
