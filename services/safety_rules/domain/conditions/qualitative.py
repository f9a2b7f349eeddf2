"""Qualitative and coded results: positive / negative / indeterminate findings, and coded
or text results matched by pattern (pure).

A result's text (its analyte as sent, its value as sent) is sender free text and may carry
anything, a name included: a point names the test by Vigil's catalogue or its LOINC code
and says what was found in Vigil's words, never quoting that text.

A qualitative rule may read a quantitative analyte too (hCG, HBV DNA): a result with a
number is its numeric rule's to judge; one that says only positive or detected is judged
here. A qualitative test sent as a number (a chemiluminescent HBsAg as a signal to
cut-off ratio, 250.3 S/CO with the range 0-1) is judged against the laboratory's cut-off,
the high limit of the range it sent: at or above it is reactive (Abbott Architect and Roche
Elecsys call a ratio >= 1.00 reactive), below it non-reactive. A result the rule reads but
cannot place as positive, negative or indeterminate is a data-quality issue
(``result-unreadable``), never passed over in silence.
"""

from __future__ import annotations

import re
import unicodedata
import uuid

from services.safety_rules.domain.conditions.lab_values import candidate_results, lab_limits
from services.safety_rules.domain.conditions.points import (
    Judged,
    Point,
    Problem,
    analyte_label,
    shown_number,
)
from services.safety_rules.domain.history import LabEntry, SubjectHistory
from services.safety_rules.domain.rule_kinds import CodedResultRule, QualitativeRule
from services.safety_rules.domain.rule_terms import certainly
from shared.analytes import analyte_for, shown_unit
from shared.events.payloads import Qualitative
from shared.qualitative import qualitative_answer

#: abnormal flags (HL7 table 0078, FHIR interpretation) that read as a positive finding
_POSITIVE_FLAGS = frozenset({"A", "AA", "H", "HH", "POS"})


def _test_name(entry: LabEntry, otherwise: str) -> str:
    """The test in Vigil's words: its catalogue name or its LOINC code."""
    if analyte_for(entry.result.loinc_code or ""):
        return analyte_label(entry)
    return entry.result.loinc_code or otherwise


def judge_qualitative_result(
    rule: QualitativeRule, history: SubjectHistory, only: set[uuid.UUID] | None = None
) -> Judged:
    """Whether each qualitative result reads as one of the rule's findings (positive,
    negative, indeterminate), from its coded answer, its text, its abnormal flag or its number
    against the laboratory's cut-off; a result none of these can place is a
    ``result-unreadable`` problem. ``only`` judges just those new results."""
    points: list[Point] = []
    problems: list[Problem] = []
    for entry in candidate_results(history, rule.loinc_codes, only):
        result = entry.result
        if not result.result_status.is_measurement:
            continue  # cannot obtain, deleted, wrong: nothing to judge (it retracts)
        analyte = analyte_for(result.loinc_code or "")
        if result.value is not None and analyte is not None and analyte.scale == "Qn":
            continue  # a number: the analyte's numeric rule judges it
        finding, basis = _finding(entry)
        name = _test_name(entry, "test")
        if finding is None:
            problems.append(
                Problem(
                    "result-unreadable",
                    f"rule {rule.id}: a result of {name} (LOINC {result.loinc_code}) "
                    f"collected {result.collected_at.isoformat()} says nothing Vigil reads "
                    "as positive, negative or indeterminate, and carries no abnormal flag "
                    "(nor a number with the laboratory's cut-off), so the rule could not "
                    "judge it; ask the laboratory for a coded result",
                    entry.event_id,
                    rule.id,
                )
            )
            continue
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
                    **({"read_as": basis} if basis else {}),
                },
                learned_at=entry.recorded_at,
            )
        )
    return points, problems


def _finding(entry: LabEntry) -> tuple[Qualitative | None, str | None]:
    """What the result says, and how it was read when by its number: its coded answer,
    else its text read as one of the spellings laboratories use (a partner may publish
    without ingest's reading), else positive when the laboratory flagged it abnormal,
    else its number against the laboratory's cut-off."""
    result = entry.result
    finding = result.qualitative or qualitative_answer(result.value_text)
    if finding is None and {flag.upper() for flag in result.abnormal_flags} & _POSITIVE_FLAGS:
        finding = "positive"
    if finding is not None:
        return finding, None
    return _by_cut_off(entry)


def _by_cut_off(entry: LabEntry) -> tuple[Qualitative | None, str | None]:
    """A number against the laboratory's cut-off (its range's high limit): at or above is
    reactive, below is not; None without a usable cut-off, or when a censored number
    (``<2`` against a cut-off of 1) may lie on either side."""
    result = entry.result
    cut_off = lab_limits(result)[1]
    if result.value is None or cut_off is None or cut_off <= 0:
        return None, None
    above = certainly(result.value, result.comparator, ">=", cut_off)
    if above is None:
        return None, None
    unit = shown_unit(result.unit)
    basis = (
        f"{result.comparator or ''}{shown_number(result.value)} {unit} "
        f"{'at or above' if above else 'below'} the laboratory's cut-off "
        f"{shown_number(cut_off)} {unit} (the high limit of its range)"
    )
    return ("positive" if above else "negative"), " ".join(basis.split())


def judge_coded_result(
    rule: CodedResultRule, history: SubjectHistory, only: set[uuid.UUID] | None = None
) -> Judged:
    """Whether each coded or text result matches one of the rule's patterns (after NFKC
    normalisation); a result that is none of the answers the rule reads is a
    ``result-unreadable`` problem. ``only`` judges just those new results."""
    points: list[Point] = []
    problems: list[Problem] = []
    for entry in candidate_results(history, rule.loinc_codes, only):
        result = entry.result
        sent = result.value_text or (f"{result.value:f}" if result.value is not None else "")
        if not sent:
            continue
        # NFKC: the full-width digits and letters of a Chinese input method read as ASCII
        sent = unicodedata.normalize("NFKC", sent)
        holds = any(re.search(pattern, sent, re.IGNORECASE) for pattern in rule.patterns)
        said = rule.finding if holds else "the reported result matches none of the rule's patterns"
        name = _test_name(entry, "assessment")
        if (
            not holds
            and rule.other_answers
            and result.result_status.is_measurement
            and not any(re.search(p, sent, re.IGNORECASE) for p in rule.other_answers)
        ):
            problems.append(
                Problem(
                    "result-unreadable",
                    f"rule {rule.id}: a result of {name} (LOINC {result.loinc_code}) "
                    f"collected {result.collected_at.isoformat()} is none of the answers "
                    "the rule reads, so the rule could not judge it; ask for a coded answer",
                    entry.event_id,
                    rule.id,
                )
            )
            continue
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
    return points, problems
