"""Qualitative results in one vocabulary: positive, negative, indeterminate.

Labs spell these many ways: words (POS, Reactive, Not detected, Weakly positive),
symbols (+, -, graded 1+ / ++, +/- and ± for equivocal), the Chinese words a Chinese
laboratory information system prints (阳性 positive, 弱阳性 weakly positive, 阴性
negative, 可疑 equivocal, 检出 detected, 未检出 not detected), a word with its symbol
("Positive (+)", "阳性(+)"), full-width forms a Chinese input method types (U+FF0B plus,
U+FF08 and U+FF09 brackets: folded by Unicode NFKC), LOINC answer codes and SNOMED CT
concepts. Anything not listed stays unmapped (None) and the result keeps its text as sent.

Codes (checked against published answer lists and value sets):
LOINC answers (e.g. answer lists LL1055-4 Detected / Not detected / Equivocal /
Inconclusive and LL2206-2 Negative / Borderline / Positive): LA6576-8 Positive, LA6577-6
Negative, LA11882-0 Detected, LA11883-8 Not detected, LA9633-4 Present, LA9634-2 Absent,
LA15255-5 Reactive, LA15256-3 Nonreactive, LA11884-6 Indeterminate, LA11885-3
Equivocal, LA9663-1 Inconclusive, LA4259-3 Borderline.
SNOMED CT qualifier values: 10828004 Positive, 260385009 Negative, 260373001 Detected,
260415000 Not detected, 52101004 Present, 2667000 Absent, 11214006 Reactive, 131194007
Non-reactive, 82334004 Indeterminate, 42425007 Equivocal, 419984006 Inconclusive.
"""

from __future__ import annotations

import re
import unicodedata

from shared.events.payloads import Qualitative

_TERMS: dict[Qualitative, tuple[str, ...]] = {
    "positive": (
        "positive",
        "pos",
        "+",
        "reactive",
        "repeatedly reactive",
        "detected",
        "target detected",  # Roche cobas nucleic acid tests
        "present",
        "abnormal positive",
        # a weak (faint, low) positive is a positive: a faint line on a urine hCG device,
        # a low signal above an immunoassay's cut-off
        "weakly positive",
        "weak positive",
        "low positive",
        "faint positive",
        "strongly positive",
        "strong positive",
        "high positive",
        "阳性",  # positive
        "阳性反应",  # positive reaction
        "弱阳性",  # weakly positive
        "强阳性",  # strongly positive
        "检出",  # detected
        "已检出",  # detected
        "有反应性",  # reactive
        "反应性",  # reactive
        "la6576-8",
        "la11882-0",
        "la9633-4",
        "la15255-5",  # LOINC answers: Positive, Detected, Present, Reactive
        "10828004",
        "260373001",
        "52101004",
        "11214006",  # SNOMED CT: Positive, Detected, Present, Reactive
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
        "target not detected",  # Roche cobas nucleic acid tests
        "tnd",
        "undetected",
        "none detected",
        "absent",
        "nr",
        "阴性",  # negative
        "未检出",  # not detected
        "未检测到",  # not detected
        "无反应性",  # non-reactive
        "非反应性",  # non-reactive
        "la6577-6",
        "la11883-8",
        "la9634-2",
        "la15256-3",  # LOINC answers: Negative, Not detected, Absent, Nonreactive
        "260385009",
        "260415000",
        "2667000",
        "131194007",  # SNOMED CT: Negative, Not detected, Absent, Non-reactive
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
        "+/-",
        "+-",
        "±",
        "可疑",  # equivocal (literally "doubtful")
        "可疑阳性",  # doubtful positive
        "不确定",  # indeterminate
        "灰区",  # grey zone
        "la11884-6",
        "la11885-3",
        "la9663-1",
        "la4259-3",  # LOINC answers: Indeterminate, Equivocal, Inconclusive, Borderline
        "82334004",
        "42425007",
        "419984006",  # SNOMED CT: Indeterminate, Equivocal, Inconclusive
    ),
}
_LOOKUP = {term: answer for answer, terms in _TERMS.items() for term in terms}
_SPACES = re.compile(r"[\s_]+")
# a graded positive: 1+ to 4+, or + repeated (++, +++, ++++), as dipsticks and
# agglutination readings are written
_GRADED_PLUS = re.compile(r"^(?:[1-4]\+|\+{2,4})$")
# a word with its symbol in brackets: "Positive (+)", "阳性(+)", "阴性(-)"
_WITH_SYMBOL = re.compile(r"^(?P<word>[^()]+?)\s*\((?P<symbol>[^()]+)\)$")


def _key(spelling: str) -> str:
    folded = unicodedata.normalize("NFKC", spelling)  # full-width plus and brackets to + ( )
    return _SPACES.sub(" ", folded.strip().lower()).rstrip(".").strip()


def _answer(key: str) -> Qualitative | None:
    if key in _LOOKUP:
        return _LOOKUP[key]
    if _GRADED_PLUS.match(key):
        return "positive"
    return None


def _read(spelling: str) -> Qualitative | None:
    key = _key(spelling)
    answer = _answer(key)
    if answer is not None:
        return answer
    match = _WITH_SYMBOL.match(key)
    if match is None:
        return None
    word, symbol = _answer(match["word"].strip()), _answer(match["symbol"].strip())
    if word is None or symbol is None:
        return None
    if word == symbol:
        return word
    if {word, symbol} == {"positive", "indeterminate"}:
        return "indeterminate"  # "弱阳性(±)": the laboratory's own hesitation
    return None  # "Positive (-)" contradicts itself: unreadable, asked for


def qualitative_answer(*spellings: str | None) -> Qualitative | None:
    """The first of ``spellings`` (code, then display text, say) that maps, or None."""
    for spelling in spellings:
        if spelling:
            answer = _read(spelling)
            if answer is not None:
                return answer
    return None
