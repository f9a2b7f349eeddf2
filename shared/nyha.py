"""Reading a New York Heart Association (NYHA) functional class as sites write it.

The NYHA classification has four classes, I to IV. Sites also write the sub-classes IIIa and
IIIb (a later split of class III used in advanced heart failure), Arabic numerals ("class
3b"), the Unicode Roman numerals ("Ⅲ", which NFKC folds to "III"), Chinese forms ("心功能III
级", "NYHA分级IV级", "心功能三级") and ranges ("III-IV", "II~III"). A sub-class counts as its
class (IIIb is class III), and a range counts as its higher class: "II-III" is read as III,
the more alerting reading, because the protocol's limit (III or IV) must not be missed when
the assessor hesitated between two classes.

In free text (an adverse event's term) a class counts only next to a word that says it is
an NYHA class: "Lupus nephritis class III" (ISN/RPS) or "heart failure 3 days after the
infusion" name no NYHA class.
"""

from __future__ import annotations

import re
import unicodedata

NYHA_CLASSES = ("I", "II", "III", "IV")
_NUMBERS = {"i": 1, "ii": 2, "iii": 3, "iv": 4, "一": 1, "二": 2, "三": 3, "四": 4}

# one class: Roman (longest first), Arabic or Chinese, with an optional sub-class letter
_CLASS = r"(?:iv|iii|ii|i|[1-4]|[一二三四])[ab]?"
_RANGE = (
    rf"(?P<first>{_CLASS})"
    rf"(?:\s*(?:-|\u2013|\u2014|~|/|to|or|至|到|或)\s*(?:class\s*)?(?P<second>{_CLASS}))?"
    # a class is a whole word: "NYHA 30" or "class IIIc" is no class
    r"(?![a-z0-9])"
)
_FILLER = r"[\s:,(=-]*(?:functional\s+)?(?:class(?:ification)?|klasse|grade|分级|级别|分)?[\s:]*"
#: the whole of a field that holds only the class ("IIIb", "class 3", "NYHA III-IV", "Ⅲ级")
_FIELD = re.compile(rf"^\s*(?:nyha|心功能)?{_FILLER}{_RANGE}\s*级?\s*$", re.IGNORECASE)
#: a class in free text, next to a word that makes it an NYHA class
_IN_TEXT = (
    re.compile(
        rf"(?:nyha|new\s+york\s+heart\s+association|心功能){_FILLER}{_RANGE}", re.IGNORECASE
    ),
    re.compile(
        rf"(?:heart|cardiac)\s+failure[\s,(:-]*(?:nyha\s*)?(?:functional\s+)?class\s*{_RANGE}",
        re.IGNORECASE,
    ),
    re.compile(rf"(?:心力衰竭|心衰)[\s,(]*{_RANGE}\s*级", re.IGNORECASE),
    # the class before the heart failure it grades: "Class IV congestive heart failure"
    re.compile(
        rf"(?<![a-z])(?:nyha\s*)?class\s*{_RANGE}\s+"
        r"(?:(?:congestive|chronic|acute|systolic|diastolic|decompensated|biventricular"
        r"|left|right|sided|[- ])+\s+)?(?:heart|cardiac)\s+failure",
        re.IGNORECASE,
    ),
)
#: a term that names heart failure (MedDRA HLT Heart failures NEC terms as sites write them)
_HEART_FAILURE = re.compile(
    r"(?:heart|cardiac|ventricular|cardiopulmonary)\s+(?:failure|insufficiency|decompensation)"
    r"|\b(?:CHF|CCF|HFrEF|HFpEF|HFmrEF|ADHF)\b|心力衰竭|心衰|心功能不全",
    re.IGNORECASE,
)


def _number(token: str) -> int:
    token = token.lower().rstrip("ab")
    return int(token) if token.isdigit() else _NUMBERS[token]


def _class_of(match: re.Match[str]) -> str:
    numbers = [_number(match["first"])]
    if match["second"]:
        numbers.append(_number(match["second"]))
    return NYHA_CLASSES[max(numbers) - 1]


def _folded(text: str) -> str:
    # NFKC folds the Unicode Roman numerals (Ⅲ, ⅳ) and the full-width digits, colon, comma,
    # brackets and tilde of Chinese text to ASCII, so the patterns need only the ASCII forms
    return unicodedata.normalize("NFKC", text)


def nyha_class_of_field(value: str) -> str | None:
    """The NYHA class (I to IV) a field holding only a class says, or None when it says
    something else: ``"IIIb"`` -> ``"III"``, ``"3"`` -> ``"III"``, ``"II-III"`` -> ``"III"``."""
    match = _FIELD.match(_folded(value))
    return _class_of(match) if match else None


def nyha_classes_in_text(text: str) -> set[str]:
    """Every NYHA class that free text names as one (``"HF, NYHA class IIIb"`` -> III)."""
    folded = _folded(text)
    return {_class_of(match) for pattern in _IN_TEXT for match in pattern.finditer(folded)}


def names_heart_failure(text: str) -> bool:
    """Whether free text names heart failure (``"Cardiac failure congestive"``, ``"CHF"``,
    ``"心力衰竭"``)."""
    return bool(_HEART_FAILURE.search(_folded(text)))


def normalised_nyha_field(value: object) -> object:
    """For a payload field: a site's spelling of a class becomes the class (I to IV);
    anything else is left as sent, so the field's own check refuses it and says why."""
    if isinstance(value, str) and value not in NYHA_CLASSES:
        return nyha_class_of_field(value) or value
    return value
