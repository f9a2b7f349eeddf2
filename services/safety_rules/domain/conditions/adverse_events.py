"""Adverse events: serious, by MedDRA code or term, serious infections, NYHA class, and
CTCAE grade where a rule asks for one (pure)."""

from __future__ import annotations

import functools
import re
from typing import Any

from services.safety_rules.domain.conditions.points import Judged, Point, Problem
from services.safety_rules.domain.conditions.term_negation import without_negated
from services.safety_rules.domain.event_rule_kinds import AdverseEventRule
from services.safety_rules.domain.history import AdverseEventEntry, SubjectHistory
from shared.adverse_event_labels import adverse_event_label, is_serious
from shared.events.payloads import AdverseEventReported
from shared.nyha import names_heart_failure, nyha_classes_in_text

#: CTCAE v5.0 names grades 1 to 3 mild, moderate and severe: a report that gives only its
#: severity is read as that grade
_SEVERITY_GRADE = {"mild": 1, "moderate": 2, "severe": 3}
#: CTCAE v5.0 Heart failure: grade 3 is "symptoms at rest or with minimal activity or
#: exertion; hospitalization; new onset of symptoms" (NYHA class III or IV by definition),
#: grade 4 and 5 are worse: the classes a heart-failure report of that grade stands for
_HEART_FAILURE_GRADE_CLASSES = {3: {"III", "IV"}, 4: {"IV"}, 5: {"IV"}}


def _grade(report: AdverseEventReported) -> int | None:
    """The report's CTCAE grade, else the grade its severity names."""
    return report.ctcae_grade or _SEVERITY_GRADE.get(report.severity or "")


def _matches(rule: AdverseEventRule, text: str, *codes: str | None) -> bool:
    if any(code and code in rule.except_meddra_codes for code in codes):
        return False
    if any(code and code in (*rule.system_organ_class_codes, *rule.meddra_codes) for code in codes):
        return True
    for exclusion in rule.term_exclusions:
        text = re.sub(exclusion, " ", text, flags=re.IGNORECASE)
    # what the term names only to rule it out ("PML ruled out") is not named
    text = without_negated(text)
    return any(re.search(pattern, text, re.IGNORECASE) for pattern in rule.term_patterns)


def _nyha_class_holds(rule: AdverseEventRule, report: AdverseEventReported, text: str) -> bool:
    affirmed = without_negated(text)
    named = nyha_classes_in_text(affirmed)
    if (
        report.nyha_class in rule.nyha_classes
        or named & set(rule.nyha_classes)
        or (rule.term_patterns and _matches(rule, text, report.meddra_code))
    ):
        return True
    if report.nyha_class is not None or named:
        return False
    # no class given: a heart-failure report of CTCAE grade 3 or worse is class III-IV
    grade = _grade(report)
    implied = _HEART_FAILURE_GRADE_CLASSES.get(grade or 0, set())
    return names_heart_failure(affirmed) and bool(implied & set(rule.nyha_classes))


def _meets_criterion(rule: AdverseEventRule, entry: AdverseEventEntry) -> bool:
    report = entry.report
    text = " ".join(filter(None, (report.term, report.system_organ_class)))
    codes = (report.system_organ_class_code, report.meddra_code)
    if rule.criterion == "serious":
        return is_serious(report)
    if rule.criterion == "serious-infection":
        grade = report.ctcae_grade
        serious = is_serious(report) or (
            rule.serious_from_grade is not None
            and grade is not None
            and grade >= rule.serious_from_grade
        )
        return serious and _matches(rule, text, *codes)
    if rule.criterion == "nyha-class":
        return _nyha_class_holds(rule, report, text)
    return _matches(rule, text, *codes)


def _history_before_day0(
    rule: AdverseEventRule, report: AdverseEventReported, history: SubjectHistory
) -> bool:
    """Whether a report is medical history rather than an event on study: it began and
    ended before Day 0, before the subject was given the study's drugs (ICH E2A: an
    adverse event is an occurrence in a subject administered a product; CDASH records it
    as MH). When Day 0 is not known, or the event is still going on, it is judged (the
    more alerting reading). A serious report still raises the SAE rule: many protocols
    collect SAEs from consent, which Vigil does not know."""
    day0 = history.day0
    return (
        rule.criterion != "serious"
        and day0 is not None
        and report.end is not None
        and report.end.date() < day0
    )


def _grade_reached(
    rule: AdverseEventRule, ae_id: str, entry: AdverseEventEntry
) -> tuple[bool, Problem | None]:
    """Whether the report reaches the rule's minimum CTCAE grade, and the problem when
    nothing in the report can tell."""
    report = entry.report
    assert rule.min_grade is not None
    grade = _grade(report)
    if grade is not None:
        return grade >= rule.min_grade, None
    if is_serious(report):
        # a serious report (hospitalisation, life-threatening...) is at least CTCAE grade 3
        return True, None
    return False, Problem(
        "missing-input",
        f"rule {rule.id}: adverse event {ae_id} names an event the rule watches but gives "
        f"no CTCAE grade or severity, so whether it reaches grade {rule.min_grade} cannot "
        "be judged; send the grade",
        entry.event_id,
        rule.id,
    )


def judge_adverse_event(rule: AdverseEventRule, history: SubjectHistory) -> Judged:
    """Whether each adverse event meets the rule's criterion (serious, a MedDRA code or term,
    a serious infection, an NYHA class), reaches its minimum CTCAE grade and, when the rule
    asks, is serious: a point at its onset, and one at its end when it held. A report that began
    and ended before Day 0 is medical history, not judged."""
    points: list[Point] = []
    problems: list[Problem] = []
    for ae_id, entry in sorted(history.adverse_events.items()):
        report = entry.report
        holds = _meets_criterion(rule, entry)
        if _history_before_day0(rule, report, history):
            if holds:
                problems.append(
                    Problem(
                        "implausible-time",
                        f"adverse event {ae_id} began and ended before Day 0: medical history "
                        "(ICH E2A), not an adverse event on study; rule "
                        f"{rule.id} did not judge it; record it as medical history or correct "
                        "its dates",
                        entry.event_id,
                        rule.id,
                    )
                )
            continue
        if holds and rule.min_grade is not None:
            holds, problem = _grade_reached(rule, ae_id, entry)
            if problem is not None:
                problems.append(problem)
        serious = is_serious(report)
        if rule.require_serious:
            holds = holds and serious
        criteria = ", ".join(report.seriousness_criteria) or (
            "serious" if report.serious else "not serious"
        )
        if serious and not report.serious:
            criteria = "death (CTCAE grade 5 or outcome fatal; the seriousness flag was not set)"
        # the verbatim term and organ-class text are free text that may identify the
        # subject: the signal (and every message made of it) says it in Vigil's words
        label = adverse_event_label(
            serious=serious,
            criteria=report.seriousness_criteria or (("death",) if not report.serious else ()),
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
            serious=serious,
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
    return points, problems
