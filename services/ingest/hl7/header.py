"""Who a message says it is from, read from MSH alone (pure).

The listener must know the sender's identity (MSH-3, MSH-4) and the control id (MSH-10)
before it interprets the message: to check the identity against the authenticated source,
to rate-limit that source, and to answer even a message it refuses.
"""

from __future__ import annotations

from dataclasses import dataclass

import hl7
import hl7.exceptions

DEFAULT_VERSION = "2.5.1"


@dataclass(frozen=True)
class Hl7Header:
    application: str
    """MSH-3.1"""
    facility: str
    """MSH-4.1"""
    control_id: str
    """MSH-10"""
    version: str
    """MSH-12, or 2.5.1 when the message names none"""


def _get(msh: hl7.Segment, number: int) -> str:
    try:
        return str(msh.extract_field(1, number, 1, 1)).strip()
    except (IndexError, KeyError, hl7.exceptions.HL7Exception):
        return ""


def read_header(text: str) -> Hl7Header | None:
    """The MSH fields of ``text``; None when it does not begin with an MSH segment."""
    lines = text.lstrip("\ufeff").replace("\r\n", "\r").replace("\n", "\r").split("\r")
    # blank or whitespace-only lines before MSH are empty segments: skipped, as in the body
    first = next((line for line in lines if line.strip()), "")
    if not first.startswith("MSH") or len(first) < 8:
        return None
    try:
        msh = hl7.parse(first + "\r").segment("MSH")
    except (hl7.ParseException, KeyError, IndexError, ValueError):
        return None
    return Hl7Header(
        application=_get(msh, 3),
        facility=_get(msh, 4),
        control_id=_get(msh, 10)[:199],
        version=_get(msh, 12) or DEFAULT_VERSION,
    )
