"""Taking out of an adverse-event term the words that rule an event out (pure).

A site's verbatim term often names an event only to exclude it: "Depression (suicidal
ideation denied)", "Encephalopathy, PML ruled out", "Pneumonia, tuberculosis excluded",
"Pregnancy test negative", 妊娠试验阴性, 否认自杀意念. A rule that read such a term as naming
the event would start a 24-hour clock for an event the investigator excluded.

The reading follows NegEx (Chapman et al., "A simple algorithm for identifying negated
findings and diseases in discharge summaries", J Biomed Inform 2001;34:301-310): a
pre-negation trigger ("no", "denies", "without", "no evidence of", 否认, 排除, 未见) negates
the words after it, a post-negation trigger ("denied", "ruled out", "excluded", "test
negative", 已排除) the words before it, within a window of five words that stops at a
clause boundary (punctuation) or a termination word ("but", "with", 但). Pseudo-triggers
that look like negation but are not are read first and kept: "not ruled out", "cannot be
excluded", "gram-negative", "no change" (不除外 / 不能排除 / 待排除: not excluded, i.e.
suspected, which must still fire). "Rule out PML" (r/o: a work-up under way) is a
suspicion too and is no trigger; "PML unlikely" is kept as well, the more alerting reading.

Only the negated words are taken out: the rest of the term still counts ("Depression
(suicidal ideation denied)" is still depression). Codes are not affected: a MedDRA code is
the site's coded reading of the event.
"""

from __future__ import annotations

import re

_WINDOW = 5  # words, as NegEx

#: not negation although they contain a trigger: kept as they are
_PSEUDO = re.compile(
    r"\b(?:not|never|cannot|can't|could\s+not|couldn't)\s+(?:be\s+|been\s+|yet\s+)?"
    r"(?:ruled?\s+out|excluded?)\b"
    r"|\bno\s+(?:change|increase|decrease|improvement|response)\b"
    r"|\bnot\s+only\b|\bgram[- ]?negative\b|\btriple[- ]?negative\b"
    r"|不除外|不能排除|无法排除|未能排除|待排除?|可疑",
    re.IGNORECASE,
)
#: pre-negation triggers: the words after them are negated
_PRE = re.compile(
    r"\b(?:no|not|without|denies|denied|denying|absence\s+of|absent|free\s+of"
    r"|negative\s+for|no\s+(?:evidence|signs?|history|sign|symptoms?)\s+of"
    r"|ruled\s+out(?:\s+for)?|excluded)\b"
    r"|否认|排除|未见|未发现|未检出|没有",
    re.IGNORECASE,
)
#: post-negation triggers: the words before them are negated
_POST = re.compile(
    r"\b(?:(?:was|were|is|has\s+been|have\s+been|been)\s+)?"
    r"(?:denied|ruled\s+out|excluded|absent"
    # "negative" only as a test's result: "Breast cancer, triple negative" is no negation
    r"|(?<=test\s)negative|(?<=tests\s)negative|(?<=screen\s)negative|(?<=result\s)negative"
    r"|(?<=PCR\s)negative|(?<=culture\s)negative|(?<=serology\s)negative"
    r"|(?<=biopsy\s)negative|(?<=IGRA\s)negative|(?<=smear\s)negative)\b"
    r"|已排除|已除外|(?<=试验)阴性|(?<=检测)阴性|(?<=检查)阴性|(?<=筛查)阴性|(?<=结果)阴性",
    re.IGNORECASE,
)
#: where a negation's reach ends: punctuation, and the words that start another finding
_BOUNDARY = re.compile(
    # full-width comma, semicolon, colon and brackets written as escapes
    r"[,;:.()\[\]/\uff0c。\uff1b\uff1a、\uff08\uff09【】]"
    r"|\b(?:but|however|although|though|except|with|and)\b"
    r"|但|伴|及|和|并",
    re.IGNORECASE,
)
_WORD = re.compile(r"[A-Za-z0-9'-]+|[\u4e00-\u9fff]{1,2}")


def _clause_ranges(text: str) -> list[tuple[int, int]]:
    """The spans of text between boundaries."""
    spans: list[tuple[int, int]] = []
    start = 0
    for boundary in _BOUNDARY.finditer(text):
        spans.append((start, boundary.start()))
        start = boundary.end()
    spans.append((start, len(text)))
    return spans


def _blank(chars: list[str], start: int, end: int) -> None:
    for i in range(start, end):
        chars[i] = " "


def without_negated(text: str) -> str:
    """The term with the words a negation rules out blanked (offsets kept):
    ``"Encephalopathy, PML ruled out"`` -> ``"Encephalopathy,               "``."""
    # pseudo-triggers are masked so the triggers inside them do not count
    masked = _PSEUDO.sub(lambda m: "\0" * len(m.group()), text)
    chars = list(text)
    for start, end in _clause_ranges(masked):
        clause = masked[start:end]
        for trigger in _PRE.finditer(clause):
            words = list(_WORD.finditer(clause, trigger.end()))[:_WINDOW]
            stop = words[-1].end() if words else trigger.end()
            _blank(chars, start + trigger.start(), start + stop)
        for trigger in _POST.finditer(clause):
            words = list(_WORD.finditer(clause, 0, trigger.start()))[-_WINDOW:]
            begin = words[0].start() if words else trigger.start()
            _blank(chars, start + begin, start + trigger.end())
    return "".join(chars)
