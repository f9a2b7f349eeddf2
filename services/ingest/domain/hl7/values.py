"""OBX-5 by its value type (OBX-2), every repetition kept (pure).

Numbers are read wherever a lab puts them: NM, SN, and ST or TX whose text is a plain
number or a comparator and a number (``7.0``, ``<0.5``); the text is kept beside the
number. A repeated OBX-5 (``13.0~7.0``) of numbers gives one result per repetition; a
repetition whose meaning is unclear (numbers mixed with words, several coded answers)
makes the OBX unreadable rather than keeping one answer and dropping the others. TX and
FT repeat lines of one text (HL7 2.5.1 2.A.79/2.A.31): their lines are joined.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import hl7
import hl7.exceptions

from services.ingest.domain.hl7.fields import FieldError, number_in_text, parse_decimal
from services.ingest.domain.hl7.obx_fields import extract, get
from services.ingest.domain.hl7.outcome import DATA_TYPE_ERROR, REQUIRED_FIELD_MISSING
from shared.qualitative import qualitative_answer
from shared.text_numbers import text_result

OBX_VALUE_TYPES = ("NM", "SN", "CE", "CWE", "CNE", "ST", "TX", "FT", "DT", "TM", "TS", "DTM")
#: dates and times a lab reports as a result (a date of onset, say): kept as their text
_MOMENT_TYPES = ("DT", "TM", "TS", "DTM")
_COMPARATORS = ("<", "<=", ">", ">=")
_MAX_REPETITIONS = 20

Value = dict[str, object]


class Unreadable(Exception):
    """OBX-5 (or OBX-2) cannot be read; ``text`` names the field and the problem."""

    def __init__(self, field: int, code: str, text: str) -> None:
        super().__init__(text)
        self.field, self.code, self.text = field, code, text


def _repetitions(obx: hl7.Segment) -> list[list[str]]:
    """Each repetition of OBX-5 as its components (empty repetitions left out)."""
    out = []
    for repeat in range(1, _MAX_REPETITIONS + 1):
        try:
            extract(obx, 5, repeat, 1)
        except IndexError:
            break
        except (KeyError, hl7.exceptions.HL7Exception):
            pass
        parts = [get(obx, 5, c, repeat) for c in range(1, 5)]
        if any(parts):
            out.append(parts)
    return out


def _number(text: str) -> Value:
    found = number_in_text(text)
    if found is None:
        raise FieldError("is not a number")
    comparator, value = found
    return {"value": value, "comparator": comparator} if comparator else {"value": value}


def _structured(parts: list[str]) -> Value:
    comparator, number = parts[0], parts[1]
    if parts[2] or parts[3]:
        raise FieldError("is a range or a ratio (SN with a separator), which Vigil does not read")
    if comparator in ("", "="):
        return {"value": parse_decimal(number)}
    if comparator not in _COMPARATORS:
        raise FieldError("has an SN comparator that is not one of < <= > >= =")
    return {"value": parse_decimal(number), "comparator": comparator}


def read_values(obx: hl7.Segment, is_measurement: bool) -> list[Value]:
    """The result(s) of OBX-5: one dict of LabResultReported fields per result."""
    repetitions = _repetitions(obx)
    if not repetitions:
        if not is_measurement:
            return [{}]  # X, D, W: no value to report
        raise Unreadable(5, REQUIRED_FIELD_MISSING, "OBX-5 (value) is empty")
    value_type = checked_value_type(obx)
    if value_type in _MOMENT_TYPES:
        return [{"value_text": " ".join(parts[0] for parts in repetitions)[:500]}]
    try:
        if value_type == "NM":
            return [_number(parts[0]) for parts in repetitions]
        if value_type == "SN":
            return [_structured(parts) for parts in repetitions]
    except FieldError as error:
        raise Unreadable(5, DATA_TYPE_ERROR, f"OBX-5 ({value_type} value) {error}") from None
    if value_type in ("TX", "FT"):
        return [_text(" ".join(parts[0] for parts in repetitions))]
    if value_type == "ST":
        texts = [parts[0] for parts in repetitions]
        if len(texts) == 1:
            return [_text(texts[0])]
        if all(_is_number(text) for text in texts):
            return [{**_number(text), "value_text": text} for text in texts]
        raise Unreadable(
            5,
            DATA_TYPE_ERROR,
            "OBX-5 repeats values that are not all numbers: send each result in its own OBX",
        )
    if len(repetitions) > 1:  # CE, CWE, CNE
        raise Unreadable(
            5,
            DATA_TYPE_ERROR,
            f"OBX-5 repeats {len(repetitions)} coded answers: send each in its own OBX",
        )
    code, text = repetitions[0][0], repetitions[0][1]
    return [{"qualitative": qualitative_answer(code, text), "value_text": (text or code)[:500]}]


def checked_value_type(obx: hl7.Segment) -> str:
    """OBX-2, one of the value types Vigil reads (HL7 table 0125), or Unreadable."""
    try:
        value_type = extract(obx, 2, 1, 1).strip().upper()
    except (IndexError, KeyError, hl7.exceptions.HL7Exception):
        value_type = ""
    if value_type not in OBX_VALUE_TYPES:
        raise Unreadable(
            2,
            DATA_TYPE_ERROR if value_type else REQUIRED_FIELD_MISSING,
            f"OBX-2 value type is not one of {', '.join(OBX_VALUE_TYPES)}",
        )
    return value_type


def _is_number(text: str) -> bool:
    try:
        return number_in_text(text) is not None
    except FieldError:  # a number out of the range a result may have: kept as text
        return False


def _text(text: str) -> Value:
    """A text result: a number when it is one (kept as text too), else words."""
    return text_result(text[:500])


#: a number followed by one word, as labs write a unit into an ST value ("6.5 g/dL")
_NUMBER_AND_UNIT = re.compile(r"^\s*(\S*\d\.?)\s*([^\d\s.][^\s]*)\s*$")


def with_its_unit(value: Value, unit: str | None, known: Callable[[str], bool]) -> str | None:
    """A text result that is exactly "<number> <unit>" read as the number, when the unit
    is OBX-6's or one Vigil knows for the analyte (``known``): the value fields are put in
    ``value`` and the unit read is returned (None: left as text). A laboratory that writes
    "6.5 g/dL" in an ST OBX-5 reports a haemoglobin of 6.5 g/dL, which must be judged."""
    text = value.get("value_text")
    if "value" in value or not isinstance(text, str):
        return None
    match = _NUMBER_AND_UNIT.match(text)
    if match is None:
        return None
    written = match[2]
    if not (written == unit or (unit is None and known(written))):
        return None
    try:
        number = _number(match[1].strip())
    except FieldError:
        return None
    value.pop("qualitative", None)
    value.update(number)
    return written
