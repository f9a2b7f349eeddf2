"""The values an event payload may carry: bounded, so that whatever is accepted can be
stored, encoded and judged.

Ingest answers ``202`` (or HL7 ``AA``) only for facts that the rules service can append to
the event store, encode canonically and judge; a value past these bounds is refused at the
door with the field named (``422`` / ``AE``). Every channel (JSON, FHIR, HL7) and the rules
service's own parsing of a record validate with these same types, so they cannot disagree.

- **Dates and date-times** (``ClinicalDate``, ``ClinicalDateTime``): the years 1900 to 2200
  as written, with a UTC offset of whole seconds and at most 14 hours either way (the
  widest any time zone has; PostgreSQL cannot read an offset of 16 hours or more back from
  the stored JSON, Python none of 24). Shifted to UTC such a moment stays far inside what
  Python (years 1 to 9999) and PostgreSQL's ``timestamptz`` hold, and no fact about a
  trial subject lies outside it. ``9999-12-31T23:00:00-14:00`` is a valid ISO time that
  Python cannot shift to UTC; it is refused here.
- **Numbers** (``ClinicalDecimal``): finite, zero or between 1e-15 and 1e15 in magnitude,
  with at most 17 digits. The audit log stores a number as a JSON number (a double), so a
  value within these bounds is read back as the value sent (to a double's precision) and
  read back within the same bounds: what the rules parse is what ingest accepted.
  ``"1E+400"`` is a valid decimal whose double is infinite; it is refused here.
- **Derived numbers** (``DerivedDecimal``): what the rules compute from bounded facts (a
  ratio to the upper limit, a summed daily dose); finite and below 1e100, digits unbounded.
- **Identifiers**: study, subject and site ids are ``[A-Za-z0-9._-]``, 1 to 64 characters;
  codes, units and message ids are one line of printable text (``Code``).
- **Text**: any Unicode but U+0000 (PostgreSQL's ``jsonb`` cannot hold it) and lone
  surrogates (not UTF-8); line breaks are allowed. ``EventPayload`` checks every string of
  every payload (``refuse_unstorable_text``), so a new field cannot forget it.

Every message names the field's problem, never its value.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, Field, PlainSerializer

EARLIEST_YEAR = 1900
LATEST_YEAR = 2200
# the widest offset any time zone has; PostgreSQL reads no offset of 16 hours or more
LARGEST_UTC_OFFSET = timedelta(hours=14)
LARGEST_MAGNITUDE = Decimal("1e15")
SMALLEST_MAGNITUDE = Decimal("1e-15")
MAX_DIGITS = 17
LARGEST_DERIVED_MAGNITUDE = Decimal("1e100")

IDENTIFIER_PATTERN = r"^[A-Za-z0-9._-]+$"
# one line of printable text: no C0 control characters, no DEL
CODE_PATTERN = r"^[^\x00-\x1f\x7f]+$"


def _decimal_as_json_number(value: Decimal) -> float | int:
    return int(value) if value == value.to_integral_value() and abs(value) < 2**53 else float(value)


def clinical_number(value: Decimal) -> Decimal:
    """The value when it is a clinical number (see module); else ValueError saying why."""
    # pydantic has refused NaN and the infinities already; a Decimal made in Python may not be
    if not value.is_finite():
        raise ValueError("must be a finite number")
    if value and not SMALLEST_MAGNITUDE <= abs(value) <= LARGEST_MAGNITUDE:
        raise ValueError(
            f"must be 0 or between {SMALLEST_MAGNITUDE} and {LARGEST_MAGNITUDE} in magnitude"
        )
    if len(value.as_tuple().digits) > MAX_DIGITS:
        raise ValueError(f"has more than {MAX_DIGITS} digits")
    return value


def _derived_number(value: Decimal) -> Decimal:
    if not value.is_finite() or abs(value) >= LARGEST_DERIVED_MAGNITUDE:
        raise ValueError(f"must be a finite number below {LARGEST_DERIVED_MAGNITUDE}")
    return value


_AS_JSON_NUMBER = PlainSerializer(
    _decimal_as_json_number, return_type=int | float, when_used="json"
)
# Lab values, doses, weights, limits: exact in Python, JSON numbers on the wire.
ClinicalDecimal = Annotated[Decimal, AfterValidator(clinical_number), _AS_JSON_NUMBER]
# What the rules compute from clinical numbers (e.g. a multiple of the upper limit).
DerivedDecimal = Annotated[Decimal, AfterValidator(_derived_number), _AS_JSON_NUMBER]


def in_clinical_years(year: int) -> None:
    """ValueError unless ``year`` is one a clinical date may have (see module)."""
    if not EARLIEST_YEAR <= year <= LATEST_YEAR:
        raise ValueError(f"must be in the years {EARLIEST_YEAR} to {LATEST_YEAR}")


def clinical_moment(value: datetime) -> datetime:
    """The value when it is a clinical date-time (see module); else ValueError saying why."""
    in_clinical_years(value.year)
    offset = value.utcoffset()
    if offset is not None and (abs(offset) > LARGEST_UTC_OFFSET or offset % timedelta(seconds=1)):
        raise ValueError("must have a UTC offset of whole seconds, at most 14 hours either way")
    return value


def _clinical_day(value: date) -> date:
    in_clinical_years(value.year)
    return value


# When something happened or is due, with its UTC offset.
ClinicalDateTime = Annotated[AwareDatetime, AfterValidator(clinical_moment)]
ClinicalDate = Annotated[date, AfterValidator(_clinical_day)]

StudyId = Annotated[str, Field(min_length=1, max_length=64, pattern=IDENTIFIER_PATTERN)]
SubjectId = Annotated[str, Field(min_length=1, max_length=64, pattern=IDENTIFIER_PATTERN)]
SiteId = Annotated[str, Field(min_length=1, max_length=64, pattern=IDENTIFIER_PATTERN)]
Code = Annotated[str, Field(pattern=CODE_PATTERN)]


def unstorable_text(value: Any) -> str | None:
    """Why a value cannot be stored, or None: a string with NUL or a lone surrogate, a
    number that is not finite, or such a thing inside a tuple, list, dict or model."""
    if isinstance(value, str):
        if "\x00" in value:
            return "contains a NUL character (U+0000), which cannot be stored"
        if not value.isascii():
            try:
                value.encode()
            except UnicodeEncodeError:
                return "contains a lone surrogate, which is not valid Unicode text"
        return None
    if isinstance(value, tuple | list):
        return next((why for item in value if (why := unstorable_text(item))), None)
    if isinstance(value, dict):
        for key, item in value.items():
            if why := unstorable_text(key) or unstorable_text(item):
                return why
        return None
    if isinstance(value, BaseModel):  # a nested model's strings are stored as well
        return unstorable_text(value.__dict__)
    if isinstance(value, float | Decimal) and not _finite(value):
        return "contains a number that is not finite"
    return None


def _finite(value: float | Decimal) -> bool:
    return value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)


def refuse_unstorable_text(value: Any) -> Any:
    """A field validator: every string a payload holds must be storable (see module)."""
    if (why := unstorable_text(value)) is not None:
        raise ValueError(why)
    return value
