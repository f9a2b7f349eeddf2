"""Reading HL7 v2 data types: timestamps, numbers, reference ranges (pure)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation

from shared.events.values import clinical_moment, clinical_number, in_clinical_years

_DTM = re.compile(
    r"^(?P<y>\d{4})(?P<mo>\d{2})?(?P<d>\d{2})?(?P<h>\d{2})?(?P<mi>\d{2})?(?P<s>\d{2})?"
    r"(?:\.(?P<f>\d{1,4}))?(?P<tz>[+-]\d{4})?$"
)
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_RANGE = re.compile(rf"^\s*({_NUMBER})\s*-\s*({_NUMBER})\s*$")
_UPPER = re.compile(rf"^\s*(?:<|<=|≤)\s*({_NUMBER})\s*$")
_LOWER = re.compile(rf"^\s*(?:>|>=|≥)\s*({_NUMBER})\s*$")


class FieldError(ValueError):
    """A field's content does not fit its HL7 data type. The message says how, never
    what the content was (it may be a birth date): the caller names the field."""


def parse_dtm(text: str, *, default_zone: tzinfo) -> datetime:
    """HL7 DTM/TS (``YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]``) as an aware datetime; a value
    without an offset is in the source's configured zone. Only the years a payload accepts
    (shared/events/values.py) are read, so an AE names the field rather than the rules
    failing on a time they cannot store. Errors name the problem, never the value."""
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
        return clinical_moment(moment.replace(tzinfo=zone))
    except ValueError as error:
        raise FieldError(str(error)) from None


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
    """OBX-7: ``3.5-5.0``, ``<1.0``, ``>60``; anything else gives no limits."""
    if match := _RANGE.match(text):
        return Decimal(match[1]), Decimal(match[2])
    if match := _UPPER.match(text):
        return None, Decimal(match[1])
    if match := _LOWER.match(text):
        return Decimal(match[1]), None
    return None, None
