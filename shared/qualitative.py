"""Qualitative results in one vocabulary: positive, negative, indeterminate.

Labs spell these many ways: words (POS, Reactive, Not detected), symbols (+, -), LOINC
answer codes and SNOMED CT concepts. Anything not listed stays unmapped (None) and the
result keeps its text as sent.
"""

from __future__ import annotations

import re

from shared.events.payloads import Qualitative

_TERMS: dict[Qualitative, tuple[str, ...]] = {
    "positive": (
        "positive",
        "pos",
        "+",
        "reactive",
        "repeatedly reactive",
        "detected",
        "present",
        "abnormal positive",
        "la6576-8",
        "la11882-0",
        "la9633-4",  # LOINC answers: Positive, Detected, Present
        "10828004",
        "260373001",
        "52101004",  # SNOMED CT: Positive, Detected, Present
    ),
    "negative": (
        "negative",
        "neg",
        "-",
        "non-reactive",
        "nonreactive",
        "non reactive",
        "not reactive",
        "not detected",
        "undetected",
        "none detected",
        "absent",
        "nr",
        "la6577-6",
        "la11883-8",
        "la9634-2",  # LOINC answers: Negative, Not detected, Absent
        "260385009",
        "260415000",
        "2667000",  # SNOMED CT: Negative, Not detected, Absent
    ),
    "indeterminate": (
        "indeterminate",
        "equivocal",
        "borderline",
        "inconclusive",
        "ind",
        "eqv",
        "weakly reactive",
        "grey zone",
        "gray zone",
        "la11884-6",
        "la4259-3",  # LOINC answers: Indeterminate, Equivocal
        "82334004",
        "42425007",  # SNOMED CT: Indeterminate, Equivocal
    ),
}
_LOOKUP = {term: answer for answer, terms in _TERMS.items() for term in terms}
_SPACES = re.compile(r"[\s_]+")


def qualitative_answer(*spellings: str | None) -> Qualitative | None:
    """The first of ``spellings`` (code, then display text, say) that maps, or None."""
    for spelling in spellings:
        if spelling:
            key = _SPACES.sub(" ", spelling.strip().lower()).rstrip(".")
            if key in _LOOKUP:
                return _LOOKUP[key]
    return None
