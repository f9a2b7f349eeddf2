"""Who a message says it is from, read from MSH alone (pure).

The listener must know the sender's identity (MSH-3, MSH-4) and the control id (MSH-10)
before it interprets the message: to check the identity against the authenticated source,
to rate-limit that source, and to answer even a message it refuses.
"""

from __future__ import annotations

from dataclasses import dataclass

import hl7

from services.ingest.domain.hl7.envelope import segments
from services.ingest.domain.hl7.obx_fields import get

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


def read_header(text: str) -> Hl7Header | None:
    """The MSH fields of ``text``; None when it does not begin with an MSH segment."""
    # blank or whitespace-only lines before MSH are empty segments: skipped, as in the body
    first = next(iter(segments(text.lstrip("\ufeff"))), "")
    if not first.startswith("MSH") or len(first) < 8:
        return None
    try:
        msh = hl7.parse(first + "\r").segment("MSH")
    except (hl7.ParseException, KeyError, IndexError, ValueError):
        return None
    return Hl7Header(
        application=get(msh, 3),
        facility=get(msh, 4),
        control_id=get(msh, 10)[:199],
        version=get(msh, 12) or DEFAULT_VERSION,
    )
