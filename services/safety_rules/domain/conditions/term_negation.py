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

Two further scopes follow ConText (Harkema et al., "ConText: an algorithm for determining
negation, experiencer, and temporal status from clinical reports", J Biomed Inform
2009;42:839-851), which extends NegEx: a history ("history of TB", "Hx of", 既往, 病史) is
not a new event, and a family history ("family history of breast cancer", 乳腺癌家族史) is a
relative's (the experiencer is not the subject). A term that names a procedure about the
event rather than the event is read the same way: a screening ("Cancer screening", "TB
screening", 筛查; a positive screening still counts), a vaccination ("COVID-19
vaccination", 新冠疫苗接种), prophylaxis ("infection prophylaxis") and a false positive
test; a procedure's scope is narrow (three words, stopping at a preposition), so
"Anaphylaxis to influenza vaccine" is still anaphylaxis. An answer written after the
finding it answers is a post-negation too: "Suicidal ideation: none", "Suicidal ideation
negative", 自杀意念 then a full-width colon and 无, and "Suicide risk assessment: low"
(low only as the answer to a risk, assessment, score or screen: "Blood pressure: low" is
hypotension). A scope also ends at "after",
"following", "despite", "during", "while" ("Herpes zoster following vaccination" is still
herpes zoster).

Only the negated words are taken out: the rest of the term still counts ("Depression
(suicidal ideation denied)" is still depression). Codes are not affected: a MedDRA code is
the site's coded reading of the event.
"""

from __future__ import annotations

import re
from functools import lru_cache

_WINDOW = 5  # words, as NegEx

#: not negation although they contain a trigger: kept as they are
_PSEUDO = re.compile(
    r"\b(?:not|never|cannot|can't|could\s+not|couldn't)\s+(?:be\s+|been\s+|yet\s+)?"
    r"(?:ruled?\s+out|excluded?)\b"
    r"|\bno\s+(?:change|increase|decrease|improvement|response)\b"
    r"|\bnot\s+only\b|\bgram[- ]?negative\b|\btriple[- ]?negative\b"
    # a receptor status or a stain is no negation: "breast cancer ER negative"
    r"|\b(?:ER|PR|PgR|HER-?2|hormone[- ]receptor|receptor|o?estrogen|progesterone|EGFR|ALK"
    r"|KRAS|PD-?L1|Rh|rhesus)[- ]?negative\b"
    r"|不除外|不能排除|无法排除|未能排除|待排除?|待除外|不能除外|无法除外|未除外|可疑",
    re.IGNORECASE,
)
#: pre-negation triggers: the words after them are negated
_PRE = re.compile(
    r"\b(?:no|not|without|denies|denied|denying|absence\s+of|absent|free\s+of"
    r"|negative\s+for|no\s+(?:evidence|signs?|history|sign|symptoms?)\s+of"
    r"|ruled\s+out(?:\s+for)?|excluded"
    # ConText: a history is not a new event, a family history is a relative's
    r"|(?:family\s+|past\s+(?:medical\s+)?)?history\s+of|hx\s+of)\b"
    r"|否认|排除|除外|未见|未发现|未检出|没有|既往",
    re.IGNORECASE,
)
#: post-negation triggers: the words before them are negated
_POST = re.compile(
    r"\b(?:(?:was|were|is|has\s+been|have\s+been|been)\s+)?"
    r"(?:denied|ruled\s+out|excluded|absent"
    # "negative" only as a test's result: "Breast cancer, triple negative" is no negation
    r"|(?<=test\s)negative|(?<=tests\s)negative|(?<=screen\s)negative|(?<=result\s)negative"
    r"|(?<=PCR\s)negative|(?<=culture\s)negative|(?<=serology\s)negative"
    r"|(?<=biopsy\s)negative|(?<=IGRA\s)negative|(?<=smear\s)negative"
    r"|(?<=screening\s)negative|(?<=assay\s)negative"
    # "negative" ending its clause: "Suicidal ideation negative"
    r"|negative(?=\s*$)"
    r"|false[- ]?positive"
    # ConText history and experiencer
    r"|family\s+history)\b"
    r"|已排除|已除外|(?<=试验)阴性|(?<=检测)阴性|(?<=检查)阴性|(?<=筛查)阴性|(?<=结果)阴性"
    r"|假阳性|家族史|病史|既往史",
    re.IGNORECASE,
)
#: a procedure about the event names no event: the words just before it ("TB screening",
#: "COVID-19 vaccination", "infection prophylaxis", 新冠疫苗) or just after ("prophylaxis
#: against PCP"), within a narrow window that stops at a preposition, so that "Anaphylaxis
#: to influenza vaccine" is still anaphylaxis; a positive screening is the finding
_PROCEDURE_POST = re.compile(
    r"\b(?:screen(?:ing)?|vaccin(?:e|es|ation|ations)|immuni[sz]ations?|prophyla(?:xis|ctic))\b"
    r"|筛查|疫苗(?:接种)?|预防",
    re.IGNORECASE,
)
_PROCEDURE_PRE = re.compile(
    r"\b(?:prophyla(?:xis|ctic)\s+(?:against|of|for)|prevention\s+of)\b", re.IGNORECASE
)
_PROCEDURE_WINDOW = 3
_STOP = re.compile(
    r"^(?:to|of|from|by|against|for|on|in|at|after|following|post|reaction|reactions)$",
    re.IGNORECASE,
)
_POSITIVE_AFTER = re.compile(
    r"[\s:=\uff1a]*(?:test\s+)?(?:positive|pos\b|abnormal|reactive|detected|\+|阳性|异常)",
    re.IGNORECASE,
)
#: an answer written after a colon: "Suicidal ideation: none", 自杀意念 (full-width colon) 无
_ANSWER = re.compile(
    r"[:=\uff1a]\s*(?P<answer>none|nil|negative|neg|absent|no|denied|not\s+present|low(?:\s+risk)?"
    r"|无|阴性|否|未见|低(?:风险)?)(?=\s*(?:$|[,;.)\uff0c。\uff1b\uff09]))",
    re.IGNORECASE,
)
#: what "low" answers: a risk, an assessment, a score or a screen, not a measurement
_RISK_ITEM = re.compile(
    r"(?:risk|assessment|score|screen(?:ing)?|风险|评估|筛查)\s*$", re.IGNORECASE
)
#: where a negation's reach ends: punctuation, and the words that start another finding
_BOUNDARY = re.compile(
    # full-width comma, semicolon, colon and brackets written as escapes
    r"[,;:.()\[\]/\uff0c。\uff1b\uff1a、\uff08\uff09【】]"
    r"|\b(?:but|however|although|though|except|with|and"
    r"|after|following|despite|during|while)\b"
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


def _reach_after(text: str, at: int, window: int, stop: bool = False) -> int:
    """Where a scope from ``at`` ends: after the next ``window`` words, or before
    the first ``_STOP`` word among them when ``stop``."""
    reach = at
    for word in list(_WORD.finditer(text, at))[:window]:
        if stop and _STOP.match(word.group()):
            break
        reach = word.end()
    return reach


def _reach_before(text: str, at: int, window: int, stop: bool = False) -> int:
    """Where a scope ending at ``at`` begins: at the ``window`` words before it,
    or after the nearest ``_STOP`` word among them when ``stop``."""
    reach = at
    for word in reversed(list(_WORD.finditer(text, 0, at))[-window:]):
        if stop and _STOP.match(word.group()):
            break
        reach = word.start()
    return reach


def _answered(
    chars: list[str], masked: str, clauses: list[tuple[int, int]], answer: re.Match[str]
) -> None:
    """Blank the finding a negative answer after a colon answers, and the answer."""
    before = next((span for span in clauses if span[1] == answer.start()), None)
    if before is None:
        return
    start, end = before
    low = answer["answer"].lower().startswith("low") or answer["answer"].startswith("低")
    if low and not _RISK_ITEM.search(masked[start:end]):
        return  # "Blood pressure: low" is a finding, not a negative answer
    words = list(_WORD.finditer(masked, start, end))[-_WINDOW:]
    begin = words[0].start() if words else start
    _blank(chars, begin, answer.end())


def _blank_procedures(chars: list[str], masked: str, start: int, end: int) -> None:
    """Blank the event a procedure in this clause is about (see ``_PROCEDURE_POST``)."""
    clause = masked[start:end]
    for trigger in _PROCEDURE_POST.finditer(clause):
        if _POSITIVE_AFTER.match(masked, start + trigger.end()):
            continue  # "TB screening positive" is the finding
        begin = _reach_before(clause, trigger.start(), _PROCEDURE_WINDOW, stop=True)
        _blank(chars, start + begin, start + trigger.end())
    for trigger in _PROCEDURE_PRE.finditer(clause):
        stop = _reach_after(clause, trigger.end(), _PROCEDURE_WINDOW, stop=True)
        _blank(chars, start + trigger.start(), start + stop)


# per report per adverse-event rule per walk, and the same few terms each time: read once
@lru_cache(maxsize=4096)
def without_negated(text: str) -> str:
    """The term with the words a negation rules out blanked (offsets kept):
    ``"Encephalopathy, PML ruled out"`` -> ``"Encephalopathy,               "``."""
    # pseudo-triggers are masked so the triggers inside them do not count
    masked = _PSEUDO.sub(lambda m: "\0" * len(m.group()), text)
    chars = list(text)
    clauses = _clause_ranges(masked)
    for answer in _ANSWER.finditer(masked):
        _answered(chars, masked, clauses, answer)
    for start, end in clauses:
        clause = masked[start:end]
        _blank_procedures(chars, masked, start, end)
        for trigger in _PRE.finditer(clause):
            stop = _reach_after(clause, trigger.end(), _WINDOW)
            _blank(chars, start + trigger.start(), start + stop)
        for trigger in _POST.finditer(clause):
            begin = _reach_before(clause, trigger.start(), _WINDOW)
            _blank(chars, start + begin, start + trigger.end())
    return "".join(chars)
