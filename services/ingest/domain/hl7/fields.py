"""Reading HL7 v2 data types: timestamps, numbers, reference ranges (pure)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation

from shared.events.payloads import TimePrecision
from shared.events.values import clinical_moment, clinical_number, in_clinical_years
from shared.text_numbers import NUMBER
from shared.text_numbers import number_in_text as shared_number_in_text

_DTM = re.compile(
    r"^(?P<y>\d{4})(?P<mo>\d{2})?(?P<d>\d{2})?(?P<h>\d{2})?(?P<mi>\d{2})?(?P<s>\d{2})?"
    r"(?:\.(?P<f>\d{1,4}))?(?P<tz>[+-]\d{4})?$"
)
# what may follow a range's numbers: a unit or words ("7 - 40 U/L", "<5 mg/L (adults)")
_AFTER = r"(?:\s*[^\d.\s].*)?"
_RANGE = re.compile(rf"^\s*({NUMBER})\s*(?:-|\u2013|to)\s*({NUMBER}){_AFTER}$", re.IGNORECASE)
_UPPER = re.compile(rf"^\s*(?:<=|<|≤)\s*({NUMBER}){_AFTER}$")
_LOWER = re.compile(rf"^\s*(?:>=|>|≥)\s*({NUMBER}){_AFTER}$")


class FieldError(ValueError):
    """A field's content does not fit its HL7 data type. The message says how, never
    what the content was (it may be a birth date): the caller names the field."""


def parse_dtm(text: str, *, default_zone: tzinfo) -> datetime:
    """HL7 DTM/TS as an aware datetime (see :func:`read_dtm`)."""
    return read_dtm(text, default_zone=default_zone)[0]


def read_dtm(text: str, *, default_zone: tzinfo) -> tuple[datetime, TimePrecision | None]:
    """HL7 DTM/TS (``YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]``) as an aware datetime; a value
    without an offset is in the source's configured zone. Only the years a payload accepts
    (shared/events/values.py) are read, so an AE names the field rather than the rules
    failing on a time they cannot store. Errors name the problem, never the value. With it,
    how precisely the text dates its moment when less than to the second (``202611`` is a
    month), else None."""
    match = _DTM.match(text.strip())
    if not match:
        raise FieldError("is not an HL7 date/time (YYYY[MM[DD[HH[MM[SS]]]]][+ZZZZ])")
    parts = match.groupdict()
    fraction = parts["f"] or ""
    try:
        in_clinical_years(int(parts["y"]))  # before datetime(): year 0 is no date at all
    except ValueError as error:
        raise FieldError(str(error)) from None
    try:
        moment = datetime(
            int(parts["y"]),
            int(parts["mo"] or 1),
            int(parts["d"] or 1),
            int(parts["h"] or 0),
            int(parts["mi"] or 0),
            int(parts["s"] or 0),
            int((fraction + "000000")[:6]),
        )
    except ValueError:
        raise FieldError("is not a calendar date/time (month, day or hour out of range)") from None
    zone = default_zone
    if parts["tz"]:
        sign = 1 if parts["tz"][0] == "+" else -1
        offset = timedelta(hours=int(parts["tz"][1:3]), minutes=int(parts["tz"][3:5]))
        if offset >= timedelta(hours=24):
            raise FieldError("must have a UTC offset of at most 14 hours either way")
        zone = timezone(sign * offset)
    try:
        moment = clinical_moment(moment.replace(tzinfo=zone))
    except ValueError as error:
        raise FieldError(str(error)) from None
    precision = next((p for part, p in _PRECISION if parts[part] is None), None)
    return moment, precision


#: the first DTM part a partial time lacks, and the precision that leaves it with
_PRECISION: tuple[tuple[str, TimePrecision], ...] = (
    ("mo", "year"),
    ("d", "month"),
    ("h", "day"),
    ("mi", "hour"),
    ("s", "minute"),
)


def parse_date(text: str) -> date:
    """HL7 DT or the date part of a DTM."""
    return parse_dtm(text, default_zone=UTC).date()


def parse_decimal(text: str) -> Decimal:
    """A number (NM) within what a payload accepts (shared/events/values.py)."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise FieldError("is not a number") from None
    try:
        return clinical_number(value)
    except ValueError as error:
        raise FieldError(str(error)) from None


def parse_reference_range(text: str) -> tuple[Decimal | None, Decimal | None]:
    """OBX-7 in the forms labs write it: ``3.5-5.0``, ``7 - 40 U/L``, ``-2 - 2``,
    ``7.0 to 40.0``, ``<40``, ``<=40``, ``≤40``, ``>60``, ``>=60 mL/min``; a unit or words
    after the numbers are allowed. Anything else gives no limits (the pack's apply). A
    range that cannot be right (``40-7``) is kept as sent: the reader warns the sender and
    the rules set it aside as ``reference-range-implausible`` (not "missing")."""
    if match := _RANGE.match(text):
        return Decimal(match[1]), Decimal(match[2])
    if match := _UPPER.match(text):
        return None, Decimal(match[1])
    if match := _LOWER.match(text):
        return Decimal(match[1]), None
    return None, None


def number_in_text(text: str) -> tuple[str | None, Decimal] | None:
    """shared.text_numbers.number_in_text, its out-of-range number a FieldError."""
    try:
        return shared_number_in_text(text)
    except ValueError as error:
        raise FieldError(str(error)) from None


# HL7 table 0396 names of the coding systems units come in (OBX-6 CWE-3)
_UNIT_SYSTEMS = frozenset({"UCUM", "ISO+", "ANSI", "ISO2955", "ANS+", "L", "LN"})
_POWER_OF_TEN = re.compile(r"^(?:[x\u00d7*]\s*)?10$", re.IGNORECASE)


def is_coding_system(name: str) -> bool:
    """Whether ``name`` is a coding system as HL7 table 0396 names them (UCUM, ISO+,
    ANSI, L, local ``99...``, ``HL7nnnn``)."""
    upper = name.strip().upper()
    return upper in _UNIT_SYSTEMS or upper.startswith(("99", "HL7"))


def read_unit(components: list[str]) -> str:
    """OBX-6 as one unit, whatever its components.

    OBX-6 is a CWE (``g/dL^g/dL^UCUM``: the unit is its identifier, or its text when it
    has no identifier), but many laboratories write a power of ten with an unescaped
    caret (``10^9/L``, ``x10^9/L``, ``10^9/L^^UCUM``), which splits the unit into
    components. A first component that is only ``10`` (or ``x10``) with a second one
    that starts with a digit is that caret: the two are one unit again. Any other field
    with more than one component and no coding system in its third is such a unit too,
    rebuilt as written, so a unit is never cut short."""
    parts = [c.strip() for c in components]
    while parts and not parts[-1]:
        parts.pop()
    if not parts:
        return ""
    if len(parts) >= 2 and _POWER_OF_TEN.match(parts[0]) and parts[1][:1].isdigit():
        parts = [f"{parts[0]}^{parts[1]}", *parts[2:]]
        if len(parts) == 2 and is_coding_system(parts[1]):
            return parts[0]  # ``10^9/L^UCUM``: the caret's unit, then its system
    if len(parts) == 1:
        return parts[0]
    if len(parts) >= 3 and is_coding_system(parts[2]):
        return parts[0] or parts[1]
    if len(parts) == 2 and parts[1].casefold() == parts[0].casefold():
        return parts[0]  # identifier and text alike: a CWE without its system
    return "^".join(components).strip("^ ")
