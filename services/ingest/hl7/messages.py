"""From an HL7 v2 message to Vigil events, or to the errors its ACK must name (pure).

Supports ORU^R01 (lab results, one PATIENT_RESULT group per patient) and ADT^A04/A08
(register or update a subject), versions 2.3 to 2.5.1. A message is accepted whole or
not at all: the original-mode ACK (AA/AE/AR) answers the message, not a group. Every
problem names the segment, its position, the field and an HL7 table 0357 error code, so
the sender's ACK can point at it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Literal

import hl7
import hl7.exceptions
from pydantic import ValidationError

from services.ingest.hl7.fields import (
    FieldError,
    parse_date,
    parse_decimal,
    parse_dtm,
    parse_reference_range,
)
from services.ingest.hl7.subject import SubjectIdInvalid, SubjectIdMissing, study_subject_id
from services.ingest.subject_identifiers import SubjectIdentifiers
from shared.events import LabResultReported, ResultStatus, Sex, SubjectEnrolled, SubjectEvent
from shared.field_problems import describe, field_problems
from shared.qualitative import qualitative_answer

SUPPORTED_VERSIONS = frozenset({"2.3", "2.3.1", "2.4", "2.5", "2.5.1"})
# HL7 table 0357 (message error condition codes)
REQUIRED_FIELD_MISSING = "101"
DATA_TYPE_ERROR = "102"
TABLE_VALUE_NOT_FOUND = "103"
UNSUPPORTED_MESSAGE_TYPE = "200"
UNSUPPORTED_EVENT_CODE = "201"
UNSUPPORTED_VERSION = "203"
APPLICATION_ERROR = "207"

_STATUS = {
    "F": ResultStatus.FINAL,
    "C": ResultStatus.CORRECTED,
    "P": ResultStatus.PRELIMINARY,
    "R": ResultStatus.PRELIMINARY,  # entered, not verified
    "S": ResultStatus.PRELIMINARY,  # partial
    "X": ResultStatus.CANNOT_OBTAIN,
    "D": ResultStatus.DELETED,
    "W": ResultStatus.WRONG,
}
# OBX-11 I (pending), N (not asked), U (status change without a result): no result to record
_NO_RESULT_YET = frozenset({"I", "N", "U"})
_SEX = {"F": Sex.FEMALE, "M": Sex.MALE, "O": Sex.OTHER, "U": Sex.UNKNOWN, "A": Sex.OTHER}
Comparator = Literal["<", "<=", ">", ">="]
_COMPARATORS: dict[str, Comparator] = {"<": "<", "<=": "<=", ">": ">", ">=": ">="}


@dataclass(frozen=True)
class Hl7Problem:
    """One ERR segment: where (segment, its position in the message, field) and what."""

    segment: str
    sequence: int
    field: int
    code: str
    text: str


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


def _get(segment: hl7.Segment, number: int, component: int = 1, repeat: int = 1) -> str:
    """A component's text, unescaped; empty when the message does not have it."""
    try:
        return str(segment.extract_field(1, number, repeat, component)).strip()
    except (IndexError, KeyError, hl7.exceptions.HL7Exception):
        return ""


class _Reader:
    """Walks one message, collecting events and problems."""

    def __init__(
        self,
        message: hl7.Message,
        study_id: str,
        zone: tzinfo,
        code_map: Mapping[str, str],
        authority: str,
    ) -> None:
        self.message = message
        self.study_id = study_id
        self.authority = authority  # PID-3 assigning authority of the study's subject ids
        self.zone = zone
        self.code_map = code_map
        self.problems: list[Hl7Problem] = []
        self.control_id = _get(message.segment("MSH"), 10)

    def problem(self, segment: str, sequence: int, number: int, code: str, text: str) -> None:
        self.problems.append(Hl7Problem(segment, sequence, number, code, text))

    def numbered(self) -> list[tuple[str, int, hl7.Segment]]:
        """Segments with their position among segments of the same name (1-based)."""
        seen: dict[str, int] = {}
        out = []
        for segment in self.message:
            name = str(segment[0])
            seen[name] = seen.get(name, 0) + 1
            out.append((name, seen[name], segment))
        return out

    def subject_of(self, pid: hl7.Segment, sequence: int) -> str | None:
        """The study subject id of one PID (its position among the message's PIDs), or
        None with the problem recorded."""
        try:
            return study_subject_id(pid, self.authority)
        except SubjectIdMissing as error:
            self.problem("PID", sequence, 3, REQUIRED_FIELD_MISSING, str(error))
        except SubjectIdInvalid as error:
            self.problem("PID", sequence, 3, DATA_TYPE_ERROR, str(error))
        return None

    def lab_results(self) -> list[SubjectEvent]:
        """Every OBX under the subject of its own PATIENT_RESULT group: ORU^R01 repeats
        the group (PID, [PV1], then OBR and OBX segments) once per patient, so an OBX
        belongs to the last PID before it. A group whose subject cannot be told fails
        the whole message (the ACK is about the message), never the other groups'
        results silently."""
        segments = self.numbered()
        has_pid = any(name == "PID" for name, _, _ in segments)
        if not has_pid:
            self.problem("PID", 1, 0, REQUIRED_FIELD_MISSING, "PID segment missing")
        events: list[SubjectEvent] = []
        subject: str | None = None
        in_group = in_order = False
        obr_time, order = "", self.control_id
        obr_number = 0
        for name, sequence, segment in segments:
            if name == "PID":
                subject, in_group, in_order = self.subject_of(segment, sequence), True, False
            elif name == "OBR":
                in_order = True
                obr_number, obr_time = sequence, _get(segment, 7)
                # the filler's order number survives a corrected resend; else the placer's
                order = _get(segment, 3) or _get(segment, 2) or self.control_id
                if has_pid and not in_group:
                    self.problem(
                        "OBR",
                        sequence,
                        0,
                        REQUIRED_FIELD_MISSING,
                        "an OBR comes before any PID: each patient's results follow its PID",
                    )
            elif name == "OBX":
                if has_pid and not (in_group and in_order):
                    self.misplaced_observation(sequence, in_group)
                    continue
                result = self.observation(sequence, segment, subject, obr_number, obr_time, order)
                if result is not None:
                    events.append(result)
        has_obx = any(name == "OBX" for name, _, _ in segments)
        if not has_obx and not self.problems:
            self.problem("OBX", 1, 0, REQUIRED_FIELD_MISSING, "the message has no OBX segment")
        return events

    def misplaced_observation(self, sequence: int, in_group: bool) -> None:
        """An OBX outside its PATIENT_RESULT group's ORDER_OBSERVATION (before any PID, or
        before any OBR after its PID) has no subject or order it can be filed under: it
        fails the whole message rather than being dropped or filed under a guess."""
        where = "any OBR of its patient's group" if in_group else "any PID"
        self.problem(
            "OBX",
            sequence,
            0,
            REQUIRED_FIELD_MISSING,
            f"an OBX comes before {where}: each result follows its patient's PID and its OBR",
        )

    def observation(
        self,
        sequence: int,
        obx: hl7.Segment,
        subject: str | None,
        obr: int,
        obr_time: str,
        order: str,
    ) -> LabResultReported | None:
        before = len(self.problems)
        status_code = _get(obx, 11) or "F"
        if status_code in _NO_RESULT_YET:
            return None  # pending or not asked: nothing to record yet (the message is kept)
        status = _STATUS.get(status_code)
        if status is None:
            self.problem(
                "OBX",
                sequence,
                11,
                TABLE_VALUE_NOT_FOUND,
                f"OBX-11 result status is not one of {', '.join(_STATUS)}",
            )
        result = self.value(sequence, obx, status_code)
        unit = _get(obx, 6) or None
        if result is not None and "value" in result and unit is None:
            self.problem("OBX", sequence, 6, REQUIRED_FIELD_MISSING, "OBX-6 (units) is empty")
        collected = self.collection_time(sequence, obx, obr, obr_time)
        if len(self.problems) > before or subject is None or result is None:
            return None
        coding = self.coding(obx)
        low, high = parse_reference_range(_get(obx, 7))
        flags = tuple(flag for n in range(1, 6) if (flag := _get(obx, 8, repeat=n)))
        set_id = _get(obx, 1) or str(sequence)
        try:
            return LabResultReported.model_validate(
                {
                    "study_id": self.study_id,
                    "subject_id": subject,
                    **coding,
                    **result,
                    "unit": unit,
                    "reference_low": low,
                    "reference_high": high,
                    "collected_at": collected,
                    "result_status": status,
                    "abnormal_flags": flags,
                    "source_message_id": f"{self.control_id}/OBR{obr}/OBX{set_id}"[:128],
                    "observation_key": f"hl7:{order}:{_get(obx, 3)}:{_get(obx, 4)}"[:300],
                }
            )
        except ValidationError as error:
            # value-free: the field and the problem (an OBX-3 code that is not LOINC, say)
            self.problem("OBX", sequence, 0, APPLICATION_ERROR, describe(field_problems(error)))
            return None

    def collection_time(
        self, sequence: int, obx: hl7.Segment, obr: int, obr_time: str
    ) -> datetime | None:
        """OBX-14, or else OBR-7, in the source's zone when it carries no offset."""
        text, segment, at, field_number = _get(obx, 14), "OBX", sequence, 14
        if not text:
            text, segment, at, field_number = obr_time, "OBR", obr, 7
        if not text:
            self.problem(
                "OBX",
                sequence,
                14,
                REQUIRED_FIELD_MISSING,
                "no collection time: OBX-14 and OBR-7 are both empty",
            )
            return None
        try:
            return parse_dtm(text, default_zone=self.zone)
        except FieldError as error:
            self.problem(
                segment, at, field_number, DATA_TYPE_ERROR, f"{segment}-{field_number}: {error}"
            )
            return None

    def coding(self, obx: hl7.Segment) -> dict[str, str | None]:
        """OBX-3 as LOINC (primary or alternate coding, or through the study's code map),
        with the sender's own coding kept; no LOINC leaves the result unmapped, not lost."""
        code, text, system = _get(obx, 3, 1), _get(obx, 3, 2), _get(obx, 3, 3)
        coding: dict[str, str | None] = {
            "local_code": None if system.upper() == "LN" else code or None,
            "local_system": None if system.upper() == "LN" else system or None,
            "analyte_text": text or None,
            "loinc_code": None,
        }
        for code_at, system_at in ((1, 3), (4, 6)):
            if _get(obx, 3, system_at).upper() == "LN" and _get(obx, 3, code_at):
                coding["loinc_code"] = _get(obx, 3, code_at)
                return coding
        coding["loinc_code"] = self.code_map.get(f"{system}|{code}") or self.code_map.get(code)
        return coding

    def value(self, sequence: int, obx: hl7.Segment, status: str) -> dict[str, object] | None:
        """OBX-5 by its type (OBX-2): numbers (NM, SN), coded (CE, CWE, CNE) or text."""
        value_type = _get(obx, 2).upper()
        if not _get(obx, 5, 1) and not _get(obx, 5, 2):
            if status in _STATUS and not _STATUS[status].is_measurement:
                return {}
            self.problem("OBX", sequence, 5, REQUIRED_FIELD_MISSING, "OBX-5 (value) is empty")
            return None
        try:
            if value_type == "NM":
                text = _get(obx, 5)
                # many labs send a censored value in an NM field ("<0.5"); keep it censored
                for sign in ("<=", ">=", "<", ">"):
                    if text.startswith(sign):
                        return {"value": parse_decimal(text[len(sign) :]), "comparator": sign}
                return {"value": parse_decimal(text)}
            if value_type == "SN":
                comparator, number = _get(obx, 5, 1), _get(obx, 5, 2)
                if _get(obx, 5, 3) or _get(obx, 5, 4):
                    raise FieldError("ranges and ratios in SN values are not supported")
                if comparator in ("", "="):
                    return {"value": parse_decimal(number)}
                if comparator not in _COMPARATORS:
                    raise FieldError("the SN comparator is not one of < <= > >= =")
                return {"value": parse_decimal(number), "comparator": _COMPARATORS[comparator]}
        except FieldError as error:
            self.problem("OBX", sequence, 5, DATA_TYPE_ERROR, f"OBX-5: {error}")
            return None
        if value_type in ("CE", "CWE", "CNE"):
            code, text = _get(obx, 5, 1), _get(obx, 5, 2)
            return {"qualitative": qualitative_answer(code, text), "value_text": text or code}
        if value_type in ("ST", "TX", "FT"):
            text = _get(obx, 5)
            return {"qualitative": qualitative_answer(text), "value_text": text}
        self.problem(
            "OBX",
            sequence,
            2,
            DATA_TYPE_ERROR,
            "OBX-2 value type is not one of NM, SN, CE, CWE, CNE, ST, TX, FT",
        )
        return None

    def registration(self) -> list[SubjectEvent]:
        """One subject from ADT^A04/A08, whose message structure has exactly one PID."""
        pids = [segment for name, _, segment in self.numbered() if name == "PID"]
        if not pids:
            self.problem("PID", 1, 0, REQUIRED_FIELD_MISSING, "PID segment missing")
            return []
        if len(pids) > 1:
            self.problem(
                "PID", 2, 0, APPLICATION_ERROR, "an ADT message registers one patient: one PID"
            )
            return []
        pid = pids[0]
        subject = self.subject_of(pid, 1)
        if subject is None:
            return []
        birth_text, sex_code = _get(pid, 7), _get(pid, 8).upper()
        birth = None
        try:
            birth = parse_date(birth_text) if birth_text else None
        except FieldError as error:
            self.problem("PID", 1, 7, DATA_TYPE_ERROR, f"PID-7 (birth date): {error}")
        if not birth_text:
            self.problem("PID", 1, 7, REQUIRED_FIELD_MISSING, "PID-7 (birth date) is empty")
        sex = _SEX.get(sex_code) if sex_code else Sex.UNKNOWN
        if sex is None:
            self.problem(
                "PID", 1, 8, TABLE_VALUE_NOT_FOUND, f"PID-8 sex is not one of {', '.join(_SEX)}"
            )
        site = ""
        try:
            pv1 = self.message.segment("PV1")
            site = _get(pv1, 3, 4) or _get(pv1, 3, 1)
        except KeyError:
            pass
        if not site:
            self.problem("PV1", 1, 3, REQUIRED_FIELD_MISSING, "PV1-3 (site) is empty")
        if self.problems or birth is None or sex is None:
            return []
        try:
            return [
                SubjectEnrolled(
                    study_id=self.study_id,
                    subject_id=subject,
                    site_id=site,
                    sex=sex,
                    birth_date=birth,
                )
            ]
        except ValidationError as error:  # e.g. a site id too long: an AE, never a crash
            self.problem("PID", 1, 0, APPLICATION_ERROR, describe(field_problems(error)))
            return []


def interpret(
    raw: str,
    *,
    study_id: str,
    zone: tzinfo,
    code_map: Mapping[str, str] | None = None,
    route: Callable[[str, str], tuple[str, tzinfo]] | None = None,
    code_maps: Mapping[str, Mapping[str, str]] | None = None,
    identifiers: SubjectIdentifiers | None = None,
) -> Interpretation:
    """Read one HL7 v2 message (segments separated by carriage returns).

    ``route`` picks the study and time zone from the sender (MSH-3, MSH-4); without it,
    or for a sender it does not know, ``study_id`` and ``zone`` apply. ``code_maps`` gives
    each study's local-code map (``code_map`` is used when it has none for the study);
    ``identifiers`` the PID-3 assigning authority of each study's subject ids. No problem
    text quotes a field's content: ERR segments and logs name the field and the rule.
    """
    # senders often end segments with LF or CR LF instead of the standard CR
    raw = raw.replace("\r\n", "\r").replace("\n", "\r").strip("\r") + "\r"
    try:
        message = hl7.parse(raw)
        msh = message.segment("MSH")
    except (hl7.ParseException, KeyError, IndexError, ValueError):
        text = "not an HL7 v2 message: it must start with an MSH segment (MSH|^~\\&|...)"
        return Interpretation(
            "AR", "", "2.5.1", problems=[Hl7Problem("MSH", 1, 0, APPLICATION_ERROR, text)]
        )
    if route is not None:
        study_id, zone = route(_get(msh, 3), _get(msh, 4))
    study_codes = (code_maps or {}).get(study_id, code_map or {})
    authority = (identifiers or SubjectIdentifiers()).for_study(study_id).hl7_assigning_authority
    reader = _Reader(message, study_id, zone, study_codes, authority)
    version = _get(msh, 12)
    kind, event = _get(msh, 9, 1).upper(), _get(msh, 9, 2).upper()
    result = Interpretation(
        "AA", reader.control_id, version or "2.5.1", sender=(_get(msh, 3), _get(msh, 4))
    )
    if version not in SUPPORTED_VERSIONS:
        result.ack_code = "AR"
        result.problems.append(
            Hl7Problem(
                "MSH",
                1,
                12,
                UNSUPPORTED_VERSION,
                "MSH-12 version is not supported (2.3, 2.3.1, 2.4, 2.5 and 2.5.1 are)",
            )
        )
        return result
    if (kind, event) == ("ORU", "R01"):
        result.events = reader.lab_results()
    elif (kind, event) in (("ADT", "A04"), ("ADT", "A08")):
        result.events = reader.registration()
    else:
        result.ack_code = "AR"
        code = UNSUPPORTED_MESSAGE_TYPE if kind not in ("ORU", "ADT") else UNSUPPORTED_EVENT_CODE
        result.problems.append(
            Hl7Problem(
                "MSH",
                1,
                9,
                code,
                "MSH-9 message type is not supported (ORU^R01, ADT^A04, ADT^A08 are)",
            )
        )
        return result
    result.problems = reader.problems
    if result.problems:
        result.ack_code = "AE"
        result.events = []  # a message is accepted whole or not at all
    return result
