"""Reading any segment's fields, and where an OBX stands in its message (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import tzinfo

import hl7
import hl7.exceptions
from hl7.util import unescape

_item = list.__getitem__


def extract(segment: hl7.Segment, number: int, repeat: int, component: int) -> str:
    """``segment.extract_field(1, number, repeat, component)``, the same answer by the
    same rules (python-hl7 3's), raising the same errors, without its per-call accessor
    and checked indexing: reading fields is most of an ORU's cost."""
    name = _item(_item(segment, 0), 0)  # an empty segment raises IndexError here, as there
    number, repeat, component = number or 1, repeat or 1, component or 1
    if number >= len(segment):
        if repeat == 1 and component == 1:
            return ""  # a non-present optional value
        raise IndexError(number)
    field = _item(segment, number)
    if repeat < 1 or component < 1 or not isinstance(field, list):
        return str(segment.extract_field(1, number, repeat, component))  # not met in Vigil
    rep = _item(field, repeat - 1)
    if not isinstance(rep, hl7.Repetition):
        if component != 1:
            raise IndexError(component)
        is_msh_separators = number in (1, 2) and name == "MSH"
        return str(rep if is_msh_separators else _unescaped(segment, rep))
    if component > len(rep):
        return ""
    part = _item(rep, component - 1)
    if not isinstance(part, hl7.Component):
        return str(_unescaped(segment, part))
    return str(_unescaped(segment, _item(part, 0))) if len(part) else ""


def _unescaped(segment: hl7.Segment, text: str) -> str:
    """python-hl7's ``unescape``, skipped when the text holds no escape character (what
    ``unescape`` checks first, without its call)."""
    if not text or (isinstance(text, str) and segment.esc not in text):
        return text
    return str(unescape(segment, text))


def get(segment: hl7.Segment, number: int, component: int = 1, repeat: int = 1) -> str:
    """A component's text, unescaped; empty when the segment does not have it."""
    try:
        return extract(segment, number, repeat, component).strip()
    except (IndexError, KeyError, hl7.exceptions.HL7Exception):
        return ""


def repetitions_read(segment: hl7.Segment, number: int, most: int) -> int:
    """How many repetitions of a field may be other than empty, at most ``most``: past
    the field's last repetition ``get`` answers "" (so a reader need not ask)."""
    if number < len(segment):
        field = _item(segment, number)
        if isinstance(field, list):
            return min(most, max(1, len(field)))
        return most
    return 1


def components(segment: hl7.Segment, number: int) -> list[str]:
    """Every component of a field's first repetition, unescaped."""
    out: list[str] = []
    for component in range(1, 21):
        try:
            out.append(extract(segment, number, 1, component))
        except (IndexError, KeyError, hl7.exceptions.HL7Exception):
            break
    return out


@dataclass(frozen=True)
class ObxContext:
    """Where an OBX stands: its study and subject, its order, its position."""

    study_id: str
    subject_id: str
    control_id: str
    sequence: int  # its position among the message's OBX segments
    obr_sequence: int
    obr_time: str  # OBR-7 (else SPM-17), the collection time when OBX-14 is empty
    order: str  # "filler:<OBR-3>", "placer:<OBR-2>", or "" when the sender sent neither
    zone: tzinfo
    code_map: Mapping[str, str]
    #: where ``obr_time`` came from (segment, its sequence, field), for the ERR that names
    #: it: OBR-7, or SPM-17 when OBR-7 was empty (HL7 v2.5.1 2.15.5 ERR-2)
    time_from: tuple[str, int, int] = ("OBR", 1, 7)
