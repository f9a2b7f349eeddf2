"""Where an object-level refusal points in an HL7 v2 message: the ERR segment for each
event the sender may not write (its study in MSH-4, its site in PV1-3, its subject in
PID-3 of its own patient group, an observation another source owns in its OBX-3)."""

from __future__ import annotations

from services.ingest.domain.authorization import Refusal
from services.ingest.domain.hl7.messages import APPLICATION_ERROR, Hl7Problem
from shared.events import Envelope

# The HL7 field each ownership rule's field lives in (segment, field number)
_HL7_FIELD = {"study_id": ("MSH", 4), "site_id": ("PV1", 3), "subject_id": ("PID", 3)}


def refusal_problems(
    refusals: list[Refusal], events: list[Envelope], text: str
) -> list[Hl7Problem]:
    """One ERR per refused event, naming the segment and field the rule is about."""
    by_id = {envelope.id: envelope for envelope in events}
    problems = []
    for refused in refusals:
        segment, number = _HL7_FIELD.get(refused.field, ("MSH", 0))
        sequence = 1
        envelope = by_id.get(refused.event_id)
        source_message_id = str(envelope.data.get("source_message_id", "")) if envelope else ""
        if refused.field == "observation_key" and envelope is not None:
            segment, number = "OBX", 3
            sequence = _obx_position(text, source_message_id)
        elif refused.field == "subject_id" and envelope is not None:
            sequence = _pid_position(text, source_message_id)
        problems.append(
            Hl7Problem(
                segment, sequence, number, APPLICATION_ERROR, f"{refused.code}: {refused.problem}"
            )
        )
    return problems


def _segment_names(text: str) -> list[tuple[str, str]]:
    """(name, the rest) of each segment."""
    segments = []
    for line in text.replace("\n", "\r").split("\r"):
        name, _, rest = line.partition("|")
        segments.append((name, rest))
    return segments


def _pid_position(text: str, source_message_id: str) -> int:
    """The position among PID segments of the PID whose group holds the result's OBR
    (its source message id ends ``/OBR<n>/OBX<set id>``); 1 when it cannot be told (an
    ADT message, whose one PID it is)."""
    _, found, tail = source_message_id.rpartition("/OBR")
    obr_text = tail.partition("/OBX")[0]
    pid = obr = 0
    for name, _ in _segment_names(text):
        if name == "PID":
            pid += 1
        elif name == "OBR":
            obr += 1
            if found and str(obr) == obr_text:
                return max(pid, 1)
    return 1


def _obx_position(text: str, source_message_id: str) -> int:
    """The position among OBX segments of the OBX a result came from (its source message
    id ends ``/OBR<n>/OBX<set id>``); 1 when it cannot be told."""
    _, _, tail = source_message_id.rpartition("/OBR")
    obr_text, _, set_id = tail.partition("/OBX")
    obr = obx = 0
    for name, rest in _segment_names(text):
        if name == "OBR":
            obr += 1
        elif name == "OBX":
            obx += 1
            own_set_id = rest.split("|", 1)[0] or str(obx)
            # a repetition of OBX-5 is its OBX's result too (``OBX<set id>.<n>``)
            if str(obr) == obr_text and own_set_id == set_id.partition(".")[0]:
                return obx
    return 1
