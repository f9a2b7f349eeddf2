"""What reading an HL7 v2 message comes to: the ACK code, the events and the problems
each ERR segment names (HL7 table 0357 codes, table 0516 severities)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from shared.events import SubjectEvent

SUPPORTED_VERSIONS = frozenset({"2.3", "2.3.1", "2.4", "2.5", "2.5.1"})
# HL7 table 0357 (message error condition codes)
SEGMENT_SEQUENCE_ERROR = "100"  # segments out of order, or a required one missing
REQUIRED_FIELD_MISSING = "101"
DATA_TYPE_ERROR = "102"
TABLE_VALUE_NOT_FOUND = "103"
UNSUPPORTED_MESSAGE_TYPE = "200"
UNSUPPORTED_EVENT_CODE = "201"
UNSUPPORTED_PROCESSING_ID = "202"
UNSUPPORTED_VERSION = "203"
APPLICATION_ERROR = "207"


@dataclass(frozen=True)
class Hl7Problem:
    """One ERR segment: where (segment, its position in the message, field) and what."""

    segment: str
    sequence: int
    field: int
    code: str
    text: str
    severity: str = "E"
    """HL7 table 0516: E (the message, or its group, was not taken), W (one result could
    not be read; the rest of the message was)."""


@dataclass
class Interpretation:
    """What a message becomes: AA with events, AE with problems, or AR."""

    ack_code: Literal["AA", "AE", "AR"]
    control_id: str
    version: str
    events: list[SubjectEvent] = field(default_factory=list)
    problems: list[Hl7Problem] = field(default_factory=list)
    sender: tuple[str, str] = ("", "")  # MSH-3 application, MSH-4 facility: the ACK's receiver
    charset: str = ""  # MSH-18 the message was read in: the ACK is written in it too

    @property
    def reason(self) -> str:
        return "; ".join(
            f"{p.segment}[{p.sequence}]-{p.field}: {p.text} (HL7 0357 code {p.code})"
            for p in self.problems
        )
