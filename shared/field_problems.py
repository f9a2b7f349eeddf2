"""Validation errors without the values: where the input is wrong and how, never what it was.

Pydantic's own messages rarely quote the input, but some do or come close: a custom
validator's message may carry the value (fhir.resources' and our own), a pattern mismatch
prints an internal regular expression, a union tag names the tag that was sent, and the
key of an unknown field is itself input (a sender may have put a name there: only a key
written like a field name is repeated). Whatever is
made of a ValidationError here may go into a log line, a dead-letter reason, an HL7 ERR
segment or an HTTP answer: it names the field and the problem, nothing the sender wrote.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from shared.events.payloads import (
    LOINC_PATTERN,
    MEDDRA_PATTERN,
    SUBJECT_ID_FORM,
    SUBJECT_ID_PATTERN,
)

# A location step written like a field name (snake_case or camelCase, as Vigil's and
# FHIR's are) or an index. Anything else in a location (a key with spaces, a capitalised
# name) came from the input and may be a person's name: it is not repeated.
_FIELD_NAME = re.compile(r"^(?:[a-z_][A-Za-z0-9_]{0,63}|\d{1,9})$")
_UNNAMED = "(key)"
_MAX_PROBLEM = 200
_MAX_DESCRIBED = 1000
# Input text shorter than this is not looked for in a message: a one- or two-letter code
# ("F", "mg") identifies no one, and would match half the messages by chance.
_SHORTEST_LEAK = 3

# The form a pattern asks for, in words (the pattern itself is an internal detail).
_FORMS = {
    SUBJECT_ID_PATTERN: f"must be {SUBJECT_ID_FORM}",
    LOINC_PATTERN: "must be a LOINC code such as 718-7",
    MEDDRA_PATTERN: "must be an 8-digit MedDRA code",
    r"^[A-Za-z0-9\-.]+$": "must be letters, digits, '-' or '.' (a FHIR id)",
}
# Error types whose pydantic message names the input or the validator's internals.
_WORDS = {
    "string_pattern_mismatch": "does not have the required form",
    "extra_forbidden": "is not a field accepted here (the schema lists the fields)",
    "union_tag_invalid": "names a kind that is not accepted here",
    "union_tag_not_found": "does not say which kind it is",
    "value_error": "is not valid",
    "assertion_error": "is not valid",
}


@dataclass(frozen=True)
class FieldProblem:
    """One problem: the path to the field (names and list positions) and what is wrong."""

    location: tuple[str, ...]
    problem: str
    kind: str  # pydantic's error type, e.g. "missing", "string_type"

    @property
    def field(self) -> str:
        return ".".join(self.location) or "(body)"

    @property
    def pointer(self) -> str:
        """The location as a JSON pointer into the document that was sent."""
        return "/" + "/".join(self.location)


def field_problems(
    errors: ValidationError | Sequence[Mapping[str, Any]],
) -> list[FieldProblem]:
    """Value-free problems for a ValidationError (or its ``errors()``): each names the
    field and the problem, and quotes nothing the input held."""
    details = errors.errors() if isinstance(errors, ValidationError) else errors
    return [_problem(detail) for detail in details]


def describe(problems: Sequence[FieldProblem]) -> str:
    """One line for a log or a dead-letter reason: ``field: problem; field: problem``."""
    text = "; ".join(f"{problem.field}: {problem.problem}" for problem in problems)
    return text[:_MAX_DESCRIBED] or "invalid"


def explain(error: ValueError, *, otherwise: str) -> str:
    """One value-free line for a failed parse: a ValidationError's problems, or
    ``otherwise`` for any other ValueError (its message may quote anything)."""
    if isinstance(error, ValidationError):
        return describe(field_problems(error))
    return otherwise


def _problem(detail: Mapping[str, Any]) -> FieldProblem:
    kind = str(detail.get("type", "value_error"))
    steps = [str(step) for step in detail.get("loc", ())]
    # validator steps ("function-after[...]") and "__root__" name no field
    location = tuple(
        step if _FIELD_NAME.match(step) else _UNNAMED
        for step in steps
        if "[" not in step and step != "__root__"
    )
    return FieldProblem(location, _words(kind, detail), kind)


def _words(kind: str, detail: Mapping[str, Any]) -> str:
    context = detail.get("ctx") or {}
    if kind == "string_pattern_mismatch":
        return _FORMS.get(str(context.get("pattern", "")), _WORDS[kind])
    message = str(detail.get("msg", ""))
    if kind in ("value_error", "assertion_error"):
        message = message.split(", ", 1)[1] if ", " in message else ""
    elif kind in _WORDS:
        return _WORDS[kind]
    if not message or _quotes_input(message, detail.get("input")):
        return _WORDS.get(kind, f"is not valid ({kind})")
    return message[:_MAX_PROBLEM]


def _quotes_input(message: str, value: Any) -> bool:
    """Whether any text of the input (a value, or the values in a document) is in the
    message: then the message cannot be shown."""
    lowered = message.lower()
    return any(text.lower() in lowered for text in _texts(value, depth=0))


def _texts(value: Any, *, depth: int) -> Iterator[str]:
    if depth > 8:
        return
    if isinstance(value, str | bytes):
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        text = text.strip()
        if len(text) >= _SHORTEST_LEAK:
            yield text
    elif isinstance(value, int | float) and not isinstance(value, bool):
        text = str(value)
        if len(text.lstrip("-")) >= 6:  # a number long enough to be a phone or record number
            yield text
    elif isinstance(value, Mapping):
        for item in value.values():  # keys are field names, said anyway
            yield from _texts(item, depth=depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _texts(item, depth=depth + 1)
