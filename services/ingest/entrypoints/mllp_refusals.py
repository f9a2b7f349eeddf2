"""Why an MLLP message is refused before its content is read, in words that name the
field and the problem, never a value from the message (pure)."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

from services.ingest.domain.hl7.charset import Decoded
from services.ingest.domain.hl7.messages import (
    APPLICATION_ERROR,
    DATA_TYPE_ERROR,
    TABLE_VALUE_NOT_FOUND,
    Hl7Problem,
)
from services.ingest.domain.principals import Principal
from services.ingest.entrypoints.mllp_frames import Frame, FrameProblem

AckCode = Literal["AA", "AE", "AR"]


@dataclass(frozen=True)
class Refusal:
    """A message refused before its content is read: the answer, and how it is kept."""

    code: AckCode
    problem: Hl7Problem
    reason_code: str
    """For metrics and log lines: a short code, never the message's text."""
    principal: Principal | None = None
    close: bool = False


def msh_problem(text: str, *, field: int = 0, code: str = APPLICATION_ERROR) -> Hl7Problem:
    return Hl7Problem("MSH", 1, field, code, text)


def charset_refusal(decoded: Decoded, principal: Principal) -> Refusal:
    """MSH-18 names no character set Vigil reads (AR, 103), or the bytes are not valid in
    the one it names or in UTF-8 (AE, 102): refused, never read with replacements."""
    code = TABLE_VALUE_NOT_FOUND if decoded.unknown else DATA_TYPE_ERROR
    problem = msh_problem(decoded.problem or "MSH-18", field=18, code=code)
    ack: AckCode = "AR" if decoded.unknown else "AE"
    return Refusal(ack, problem, f"hl7-charset-{code}", principal)


def frame_problem(frame: Frame, max_bytes: int) -> Hl7Problem:
    if frame.problem is FrameProblem.OVERSIZE:
        text = (
            f"the message is {frame.size} bytes; the largest accepted is {max_bytes} "
            f"(its first {len(frame.content)} bytes are kept)"
        )
    elif frame.problem is FrameProblem.NO_START_BLOCK:
        text = "the MLLP frame does not begin with 0x0B"
    else:
        text = "the MLLP frame did not end (0x1C 0x0D) in time; what arrived is kept"
    return msh_problem(text)


def failure_text(error: BaseException) -> str:
    """What went wrong, without any value from the message: a validation error names its
    fields and the kind of error (its messages may quote a value), anything else its type
    and where it was raised."""
    if isinstance(error, ValidationError):
        fields = ", ".join(
            f"{error.title}.{'.'.join(str(p) for p in e['loc'])}: {e['type']}"
            for e in error.errors(include_input=False, include_url=False)[:3]
        )
        return f"the message could not be turned into events ({fields})"
    frames = traceback.extract_tb(error.__traceback__)
    where = f" at {frames[-1].name}:{frames[-1].lineno}" if frames else ""
    return f"the message could not be processed ({type(error).__name__}{where})"
