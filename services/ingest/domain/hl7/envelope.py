"""One MLLP block, one message: what makes a block something else (pure).

MLLP (HL7 v2.5.1 appendix C) frames exactly one message per block, and MSH is a message's
first segment (2.5.2), never a segment inside one. Read as one message, a block holding
two would file the second message's segments under the first message's sender, whose
MSH-3/MSH-4 alone is checked against the connection's source. So a block holding a second
MSH, or batch envelope segments (FHS/BHS ... BTS/FTS, 2.10.3) inside a message, is refused
before its content is read, naming the segment. (A block that begins with FHS or BHS is a
batch, split into its messages by ``hl7.batch``.)

Segments are found as the interpreter finds them (CR, LF or CR LF ends one; blank lines
are none), and a segment is taken for a header whatever hides its name: leading white
space, control characters or a byte-order mark, lower case, or a field separator other
than the first MSH's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.ingest.domain.hl7.outcome import (
    SEGMENT_SEQUENCE_ERROR,
    UNSUPPORTED_MESSAGE_TYPE,
    Hl7Problem,
)

BATCH_SEGMENTS = frozenset({"FHS", "BHS", "BTS", "FTS"})
HEADER_SEGMENTS = BATCH_SEGMENTS | {"MSH"}
# a segment's name: three letters or digits, after anything that is neither, and not
# followed by another (so ``MSHX|`` is no MSH, but `` msh#`` is)
_NAME = re.compile(r"[^A-Za-z0-9]*([A-Za-z0-9]{3})(?![A-Za-z0-9])")

BATCH_TEXT = (
    "batch envelope segments (FHS, BHS, BTS, FTS) belong around messages, never inside "
    "one: a batch begins with FHS or BHS; or send each message in its own MLLP block"
)
WIDE_BATCH_TEXT = (
    "a batch (FHS/BHS) is read only in an ASCII-based character set (UTF-8, ISO 8859, "
    "...): send UTF-16 or UTF-32 messages each in its own MLLP block"
)


@dataclass(frozen=True)
class NotOneMessage:
    """Why a block is not one message: the ERR it is refused with and a reason code."""

    problem: Hl7Problem
    reason_code: str
    """For metrics and log lines: ``mllp-batch`` or ``mllp-second-message``."""


def segments(text: str) -> list[str]:
    """The block's segments as the interpreter reads them: blank lines left out."""
    lines = text.replace("\r\n", "\r").replace("\n", "\r").split("\r")
    return [line for line in lines if line.strip()]


def header_name(segment: str) -> str | None:
    """``MSH``, ``FHS``, ``BHS``, ``BTS`` or ``FTS`` when the segment is one, however
    disguised; None otherwise."""
    match = _NAME.match(segment)
    name = match.group(1).upper() if match else ""
    return name if name in HEADER_SEGMENTS else None


def not_one_message(text: str) -> NotOneMessage | None:
    """Why ``text`` (one block's content) is not exactly one message, or None."""
    names = [(position, header_name(segment)) for position, segment in enumerate(segments(text))]
    batch = next(((p, n) for p, n in names if n in BATCH_SEGMENTS), None)
    if batch is not None:
        position, name = batch
        # a batch reaches here only when it could not be read as one (see hl7.batch)
        if position == 0:
            problem = Hl7Problem(str(name), 1, 0, UNSUPPORTED_MESSAGE_TYPE, WIDE_BATCH_TEXT)
            return NotOneMessage(problem, "mllp-batch")
        text = f"segment {position + 1} is {name}: {BATCH_TEXT}"
        problem = Hl7Problem(str(name), 1, 0, SEGMENT_SEQUENCE_ERROR, text)
        return NotOneMessage(problem, "mllp-batch-malformed")
    headers = [p for p, n in names if n == "MSH"]
    if len(headers) > 1:
        text = (
            f"segment {headers[1] + 1} is a second MSH: an MLLP block carries exactly one "
            "message; send each message in its own block"
        )
        problem = Hl7Problem("MSH", 2, 0, SEGMENT_SEQUENCE_ERROR, text)
        return NotOneMessage(problem, "mllp-second-message")
    return None
