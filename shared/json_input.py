"""The one way Vigil decodes JSON it receives: request bodies, FHIR resources, Kafka records
a partner published, acknowledgement links, and the refused messages its bookkeeping reads
again.

Python's ``json`` module recurses once per nesting level and raises RecursionError past
about a thousand: ten kilobytes of ``[`` are enough. That is neither invalid input (no
handler expects it) nor an outage, so it escaped every refusal and became a 500, an MLLP
"try again", or a Kafka batch retried for ever. pydantic-core's parser (the one pydantic
validates JSON with) stops at a fixed depth of about 200 levels, far beneath Python's
recursion limit, so whatever it returns can be walked, validated and encoded again
without recursing too deep; deeper is invalid JSON, refused, kept and answered like a body
cut short. It keeps integers exact, and refuses NaN and Infinity (RFC 8259 has neither) and
lone surrogate escapes. A leading UTF-8 byte order mark is ignored, as RFC 8259 (8.1)
allows: senders must not add one, but some (.NET, Windows tools) do.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic_core import from_json

# json.JSONDecodeError, a ValueError: FastAPI answers it as invalid JSON (422 json_invalid)
JSONDecodeError = json.JSONDecodeError

_WHERE = re.compile(r"at line (\d+) column (\d+)$")


def decode(raw: bytes | bytearray | str) -> Any:
    """The JSON value of ``raw``; JSONDecodeError (a ValueError) for anything that is not
    JSON: bytes that are not UTF-8 and nesting deeper than the parser's bound included.
    Never RecursionError."""
    if isinstance(raw, str):
        raw = raw.removeprefix("\ufeff")
    elif raw[:3] == b"\xef\xbb\xbf":
        raw = raw[3:]
    try:
        value = from_json(raw, allow_inf_nan=False)
    except ValueError as error:
        doc = raw if isinstance(raw, str) else bytes(raw).decode("utf-8", errors="replace")
        message = str(error)
        raise JSONDecodeError(
            _WHERE.sub("", message).strip(), doc, _position(doc, message)
        ) from None
    _refuse_repeated_members(raw)
    return value


def _refuse_repeated_members(raw: bytes | bytearray | str) -> None:
    """JSONDecodeError if an object names one member twice. RFC 8259 leaves what that
    means to each reader (the parser above keeps the last, others the first): a body
    whose ``subject_id`` two readers would read differently is refused, not guessed.
    The depth is already bounded, so this second reading cannot recurse too deep."""

    def no_repeats(pairs: list[tuple[str, Any]]) -> None:
        if len({name for name, _ in pairs}) != len(pairs):
            raise _RepeatedMember

    try:
        # numbers are not converted again: the first reading did
        json.loads(raw, object_pairs_hook=no_repeats, parse_int=len, parse_float=len)
    except _RepeatedMember:
        doc = raw if isinstance(raw, str) else bytes(raw).decode("utf-8", errors="replace")
        # the member is not named: a name is sender text like any other
        raise JSONDecodeError("an object names one of its members twice", doc, 0) from None


class _RepeatedMember(Exception):
    """An object in the JSON text names one member twice."""


def _position(doc: str, message: str) -> int:
    """The character offset the parser's "at line L column C" names (0 when it names none)."""
    found = _WHERE.search(message)
    if found is None:
        return 0
    line, column = int(found[1]), int(found[2])
    start = sum(len(text) + 1 for text in doc.split("\n")[: line - 1])
    return max(0, min(len(doc), start + column - 1))
