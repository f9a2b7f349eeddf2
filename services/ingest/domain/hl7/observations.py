"""One OBX to the results it reports, or to what makes it unreadable (pure).

An OBX whose value, unit, time, status or code cannot be read is not dropped and does not
fail its neighbours: it becomes a ``LabResultUnreadable`` for its subject, and the ACK
names it in an ERR segment of severity W. Problem texts name the field and what is wrong
in words, never the value and never an internal error or pattern.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import hl7
import hl7.exceptions
from pydantic import ValidationError

from services.ingest.domain.hl7.fields import (
    FieldError,
    parse_reference_range,
    read_dtm,
    read_unit,
)
from services.ingest.domain.hl7.identity import observation_key
from services.ingest.domain.hl7.obx_fields import ObxContext, components, get, repetitions_read
from services.ingest.domain.hl7.outcome import (
    APPLICATION_ERROR,
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    TABLE_VALUE_NOT_FOUND,
)
from services.ingest.domain.hl7.values import (
    OBX_VALUE_TYPES,
    Unreadable,
    checked_value_type,
    read_values,
    with_its_unit,
)
from shared.analytes import UnitNotConvertible, analyte_for
from shared.events import LabResultReported, LabResultUnreadable, ResultStatus
from shared.events.payloads import LOINC_PATTERN, TimePrecision

_STATUS = {
    "F": ResultStatus.FINAL,
    "C": ResultStatus.CORRECTED,
    "P": ResultStatus.PRELIMINARY,
    "R": ResultStatus.PRELIMINARY,  # entered, not verified
    "S": ResultStatus.PRELIMINARY,  # partial
    "X": ResultStatus.CANNOT_OBTAIN,
    "D": ResultStatus.DELETED,
    "W": ResultStatus.WRONG,
    # "results status change to final without retransmitting results already sent as
    # preliminary": one that carries its value anyway is that final result
    "U": ResultStatus.FINAL,
}
# OBX-11 I (pending), N (not asked), O (order detail, no result): no result to record
NO_RESULT_YET = frozenset({"I", "N", "O"})


def no_result(obx: hl7.Segment) -> bool:
    """Whether an OBX holds no result by its status (table 0085): pending, not asked, an
    order detail, or a change of status to final that sends no value again (the
    preliminary it makes final is judged already)."""
    status = get(obx, 11)
    return status in NO_RESULT_YET or (status == "U" and not get(obx, 5))


_LOINC = re.compile(LOINC_PATTERN)

__all__ = ["NO_RESULT_YET", "OBX_VALUE_TYPES", "ObxContext", "no_result", "read_observation"]


class _Problem(Exception):
    def __init__(
        self, field: int, code: str, text: str, at: tuple[str, int, int] | None = None
    ) -> None:
        super().__init__(text)
        self.field, self.code, self.text, self.at = field, code, text, at


def _coding(obx: hl7.Segment, code_map: Mapping[str, str]) -> dict[str, str | None]:
    """OBX-3 (CE/CWE: identifier, text, coding system, then the alternate's three) as
    LOINC from either coding, or else through the study's code map from the sender's own
    code; that own code is kept when no LOINC is sent, from whichever coding has one (a
    lab may leave the primary empty: ``^^LN^RBC^RBC^LAB``). No LOINC leaves the result
    unmapped, not lost."""
    codings = [(get(obx, 3, at), get(obx, 3, at + 1), get(obx, 3, at + 2)) for at in (1, 4)]
    loinc = next((code for code, _, system in codings if code and system.upper() == "LN"), None)
    code, system = next(
        ((code, system) for code, _, system in codings if code and system.upper() != "LN"),
        ("", ""),
    )
    if loinc is None and code:
        loinc = code_map.get(f"{system}|{code}") or code_map.get(code)
    sent_loinc = any(code and system.upper() == "LN" for code, _, system in codings)
    return {
        "local_code": None if sent_loinc else code or None,
        "local_system": None if sent_loinc else system or None,
        "analyte_text": next((text for _, text, _ in codings if text), "")[:200] or None,
        "loinc_code": loinc,
    }


def _checked_coding(coding: dict[str, str | None]) -> dict[str, str | None]:
    if not coding["loinc_code"] and not coding["local_code"]:
        raise _Problem(3, REQUIRED_FIELD_MISSING, "OBX-3 (observation identifier) is empty")
    loinc = coding["loinc_code"]
    if loinc is not None and not _LOINC.match(loinc):
        raise _Problem(
            3,
            DATA_TYPE_ERROR,
            "OBX-3 names LOINC (LN) as its coding system, but its code is not a LOINC "
            "code (digits, a hyphen and a check digit, as in 718-7)",
        )
    return coding


def _collected(context: ObxContext, obx: hl7.Segment) -> tuple[datetime, TimePrecision | None]:
    """OBX-14, or else OBR-7 (or SPM-17), in the source's zone when it carries no offset,
    with how precisely it was dated."""
    text, name, at = get(obx, 14), "OBX-14", None
    if not text:
        segment, sequence, number = context.time_from
        text, at = context.obr_time, context.time_from
        name = f"{segment}-{number} (of {segment} {sequence})"
    if not text:
        raise _Problem(
            14,
            REQUIRED_FIELD_MISSING,
            "no collection time: OBX-14, OBR-7 and the order's SPM-17 are all empty",
        )
    try:
        return read_dtm(text, default_zone=context.zone)
    except FieldError as error:
        raise _Problem(14, DATA_TYPE_ERROR, f"{name} (collection time) {error}", at) from None


def _status(obx: hl7.Segment) -> ResultStatus:
    status = _STATUS.get(get(obx, 11) or "F")
    if status is None:
        raise _Problem(
            11,
            TABLE_VALUE_NOT_FOUND,
            f"OBX-11 result status is not one of "
            f"{', '.join([*_STATUS, *sorted(NO_RESULT_YET)])} (HL7 table 0085)",
        )
    return status


def _unreadable(
    context: ObxContext, obx: hl7.Segment, problem: _Problem
) -> LabResultUnreadable | None:
    """The OBX as far as it can be read, with what could not be; an optional field that
    does not fit the event (a flag or a code in characters a code may not have) is left
    out. None when not even the OBX's place can be stored (a control id that is not a
    code): the message then fails whole."""
    coding = _coding(obx, context.code_map)
    if coding["loinc_code"] is not None and not _LOINC.match(coding["loinc_code"]):
        # what stood where a LOINC code belongs is not kept in the event (it could be
        # anything, a record number included); the raw message stays with its receipt
        coding["loinc_code"] = None
    collected = None
    with contextlib.suppress(_Problem):
        collected, _ = _collected(context, obx)
    optional: dict[str, object] = {
        **coding,
        "result_status": _STATUS.get(get(obx, 11) or "F"),
        "collected_at": collected,
        "abnormal_flags": tuple(f for n in range(1, 11) if (f := get(obx, 8, repeat=n))),
    }
    for _ in range(len(optional) + 1):
        try:
            return LabResultUnreadable.model_validate(
                {
                    "study_id": context.study_id,
                    "subject_id": context.subject_id,
                    "source_message_id": _message_id(context, obx),
                    "segment": f"OBX[{context.sequence}]",
                    "field": f"OBX-{problem.field}" if problem.field else "OBX",
                    "problem": problem.text[:300],
                    "error_code": problem.code,
                    **optional,
                }
            )
        except ValidationError as error:
            misfits = {str(d["loc"][0]) for d in error.errors() if d["loc"]} & set(optional)
            if not misfits:
                return None
            for name in misfits:
                optional.pop(name)
    return None


def _message_id(context: ObxContext, obx: hl7.Segment, repetition: int = 1) -> str:
    set_id = get(obx, 1) or str(context.sequence)
    suffix = f".{repetition}" if repetition > 1 else ""
    return f"{context.control_id}/OBR{context.obr_sequence}/OBX{set_id}{suffix}"[:128]


@dataclass(frozen=True)
class ObxOutcome:
    results: list[LabResultReported]
    unreadable: LabResultUnreadable | None = None
    problem: tuple[int, str, str] | None = None  # (field, 0357 code, text) for the ERR
    #: where the ERR points when not at this OBX (segment, sequence, field): the OBR-7 or
    #: SPM-17 a collection time was taken from
    located: tuple[str, int, int] | None = None


def read_observation(context: ObxContext, obx: hl7.Segment) -> ObxOutcome:
    """The results one OBX reports (one per repetition of a numeric OBX-5), or the
    unreadable OBX kept with the problem its ERR names."""
    try:
        return ObxOutcome(_results(context, obx))
    except _Problem as problem:
        return ObxOutcome(
            [],
            _unreadable(context, obx, problem),
            (problem.field, problem.code, problem.text),
            problem.at,
        )


def _known_unit(coding: dict[str, str | None], unit: str) -> bool:
    """Whether Vigil converts ``unit`` for the OBX's analyte."""
    analyte = analyte_for(coding.get("loinc_code") or "")
    if analyte is None:
        return False
    try:
        analyte.to_canonical(Decimal(1), unit)
    except UnitNotConvertible:
        return False
    return True


def _results(context: ObxContext, obx: hl7.Segment) -> list[LabResultReported]:
    try:
        if get(obx, 2) or get(obx, 5):
            checked_value_type(obx)  # the first field wrong is the one the ERR names
        status = _status(obx)
        coding = _checked_coding(_coding(obx, context.code_map))
        values = read_values(obx, status.is_measurement)
    except Unreadable as error:
        raise _Problem(error.field, error.code, error.text) from None
    unit = read_unit(components(obx, 6)) or None
    for value in values:
        unit = with_its_unit(value, unit, functools.partial(_known_unit, coding)) or unit
    if unit is not None and len(unit) > 32:
        raise _Problem(6, DATA_TYPE_ERROR, "OBX-6 (units) is longer than 32 characters")
    if any("value" in value for value in values) and unit is None:
        raise _Problem(6, REQUIRED_FIELD_MISSING, "OBX-6 (units) is empty for a numeric result")
    collected, precision = _collected(context, obx)
    low, high = parse_reference_range("^".join(components(obx, 7)))
    flags = tuple(
        flag for n in range(1, repetitions_read(obx, 8, 10) + 1) if (flag := get(obx, 8, repeat=n))
    )
    results = []
    for repetition, value in enumerate(values, start=1):
        try:
            results.append(
                LabResultReported.model_validate(
                    {
                        "study_id": context.study_id,
                        "subject_id": context.subject_id,
                        **coding,
                        **value,
                        "unit": unit,
                        "reference_low": low,
                        "reference_high": high,
                        "collected_at": collected,
                        "collected_precision": precision,
                        "result_status": status,
                        "abnormal_flags": flags,
                        "source_message_id": _message_id(context, obx, repetition),
                        "observation_key": observation_key(context, obx, collected, repetition),
                    }
                )
            )
        except ValidationError as error:
            raise _Problem(0, APPLICATION_ERROR, _words(error)) from None
    return results


_FIELD_OF = {
    "unit": "OBX-6 (units)",
    "value": "OBX-5 (value)",
    "value_text": "OBX-5 (value)",
    "abnormal_flags": "OBX-8 (abnormal flags)",
    "local_code": "OBX-3 (observation identifier)",
    "local_system": "OBX-3 (observation identifier)",
    "analyte_text": "OBX-3 (observation identifier)",
    "loinc_code": "OBX-3 (observation identifier)",
    "reference_low": "OBX-7 (reference range)",
    "reference_high": "OBX-7 (reference range)",
}


def _words(error: ValidationError) -> str:
    """Which OBX fields did not fit, in words: never pydantic's message (it may quote
    a value or a pattern)."""
    fields = sorted(
        {
            _FIELD_OF.get(str(detail["loc"][0]) if detail["loc"] else "", "OBX")
            for detail in error.errors(include_input=False, include_url=False)
        }
    )
    return f"{', '.join(fields)}: too long, or not of the kind Vigil stores for a result"
