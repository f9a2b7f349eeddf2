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
- **Numbers** (``ClinicalDecimal``): finite, at most 1e15 in magnitude, at most 32 digits
  in all, counting the zeros after the decimal point (so none smaller than 1e-32 but 0).
  The audit log stores a number as a JSON number (a double, about 16 significant digits,
  as a JSON number sent to ingest already is), so a value within these bounds is read
  back within the same bounds: what the rules parse is what ingest accepted, to a double's
  precision. ``"1E+400"`` is a valid decimal whose double is infinite; it is refused here.
  The checks are pydantic's own (``max_digits``, ``le``, ``ge``, no NaN or infinity), so
  they cost the hot path next to nothing.
- **Derived numbers** (``DerivedDecimal``): what the rules compute from bounded facts (a
  ratio to the upper limit, a summed daily dose); finite and below 1e100, digits unbounded.
- **Identifiers**: study, subject and site ids are ``[A-Za-z0-9._-]``, 1 to 64 characters;
  codes, units and message ids are one line of printable text (``Code``).
- **Text**: any Unicode but U+0000 (PostgreSQL's ``jsonb`` cannot hold it) and lone
  surrogates (not UTF-8); line breaks are allowed. ``StorableText`` (the base of every
  payload and request model) checks each field that no pattern constrains already, found
  from the annotations when the class is made, so a new field cannot forget it.

Every message names the field's problem, never its value.
"""

from __future__ import annotations

import enum
import math
import re
import types
import typing
import uuid
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails, PydanticCustomError

EARLIEST_YEAR = 1900
LATEST_YEAR = 2200
# the widest offset any time zone has; PostgreSQL reads no offset of 16 hours or more
LARGEST_UTC_OFFSET = timedelta(hours=14)
LARGEST_MAGNITUDE = Decimal("1e15")
MAX_DIGITS = 32
LARGEST_DERIVED_MAGNITUDE = Decimal("1e100")

IDENTIFIER_PATTERN = r"^[A-Za-z0-9._-]+$"
# one line of printable text: no C0 control characters, no DEL
CODE_PATTERN = r"^[^\x00-\x1f\x7f]+$"


def _decimal_as_json_number(value: Decimal) -> float | int:
    """The double a number is on the wire, written as an integer when it is one. Decided on
    the double, not the decimal, so that writing what was read back gives the same JSON:
    999999999999999.99 is the double 1e15 and is written 1000000000000000 both times."""
    number = float(value)
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


_AS_JSON_NUMBER = PlainSerializer(
    _decimal_as_json_number, return_type=int | float, when_used="json"
)
# Lab values, doses, weights, limits: exact in Python, JSON numbers on the wire.
ClinicalDecimal = Annotated[
    Decimal,
    Field(
        allow_inf_nan=False,
        max_digits=MAX_DIGITS,
        ge=-LARGEST_MAGNITUDE,
        le=LARGEST_MAGNITUDE,
    ),
    _AS_JSON_NUMBER,
]
# What the rules compute from clinical numbers (e.g. a multiple of the upper limit).
DerivedDecimal = Annotated[
    Decimal,
    Field(allow_inf_nan=False, gt=-LARGEST_DERIVED_MAGNITUDE, lt=LARGEST_DERIVED_MAGNITUDE),
    _AS_JSON_NUMBER,
]
_CLINICAL_NUMBER: TypeAdapter[Decimal] = TypeAdapter(ClinicalDecimal)


def clinical_number(value: Decimal) -> Decimal:
    """The value when it is a clinical number (see module); else ValueError saying why
    (for parsers outside pydantic, such as HL7's)."""
    try:
        return _CLINICAL_NUMBER.validate_python(value)
    except ValidationError as error:
        raise ValueError(error.errors()[0]["msg"]) from None


def in_clinical_years(year: int) -> None:
    """ValueError unless ``year`` is one a clinical date may have (see module)."""
    if not EARLIEST_YEAR <= year <= LATEST_YEAR:
        raise ValueError(f"must be in the years {EARLIEST_YEAR} to {LATEST_YEAR}")


def clinical_moment(value: datetime) -> datetime:
    """The value when it is a clinical date-time (see module); else ValueError saying why."""
    in_clinical_years(value.year)
    offset = value.utcoffset()
    if offset is not None and (
        offset.microseconds or not -LARGEST_UTC_OFFSET <= offset <= LARGEST_UTC_OFFSET
    ):
        raise ValueError("must have a UTC offset of whole seconds, at most 14 hours either way")
    return value


def _clinical_day(value: date) -> date:
    in_clinical_years(value.year)
    return value


_DIGITS = re.compile(r"^\s*[+-]?\d+(?:\.\d*)?\s*$")


def _written_as_a_date(value: Any) -> Any:
    """Refuse a number or a string of digits where a date or date-time belongs: pydantic
    reads them as Unix seconds, so an HL7 DTM "20261120" or a year "2099" would become a
    moment of 1970. Dates and date-times are ISO 8601 / RFC 3339 text (issue 15)."""
    if isinstance(value, int | float | Decimal) or (
        isinstance(value, str) and _DIGITS.match(value)
    ):
        raise PydanticCustomError(
            "date_written_as_number",
            "must be an ISO 8601 date or date-time (such as 2026-11-20T08:30:00+08:00), "
            "not a number",
        )
    return value


# When something happened or is due, with its UTC offset.
ClinicalDateTime = Annotated[
    AwareDatetime, BeforeValidator(_written_as_a_date), AfterValidator(clinical_moment)
]
ClinicalDate = Annotated[date, BeforeValidator(_written_as_a_date), AfterValidator(_clinical_day)]

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


def _checked_by_constraints(annotation: Any, metadata: list[Any]) -> bool:
    """True for a field whose type cannot hold unstorable text, or whose pattern refuses it
    (a pattern-constrained string refuses lone surrogates too, natively)."""
    flat = [
        m for item in metadata for m in (item.metadata if isinstance(item, FieldInfo) else [item])
    ]
    if any(getattr(item, "pattern", None) for item in flat):
        return True
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _checked_by_constraints(arguments[0], [*flat, *annotation.__metadata__])
    if origin in (typing.Union, types.UnionType):
        return all(_checked_by_constraints(argument, flat) for argument in arguments)
    if origin is typing.Literal:
        return True
    if origin is tuple:  # the items' own constraints, not the tuple's
        return all(_checked_by_constraints(item, []) for item in arguments if item is not ...)
    safe = (type(None), bool, int, Decimal, datetime, date, uuid.UUID, enum.Enum, AwareDatetime)
    return isinstance(annotation, type) and issubclass(annotation, safe)


def _text_fields(model: type[BaseModel]) -> tuple[str, ...]:
    hints = typing.get_type_hints(model, include_extras=True)
    return tuple(
        name
        for name, info in model.model_fields.items()
        if not _checked_by_constraints(hints[name], list(info.metadata))
    )


class StorableText(BaseModel):
    """Refuses text that cannot be stored (see module) in every field that no constraint
    checks already: the fields are found once per class, and one check per instance
    visits only them, naming the field."""

    _text_fields: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._text_fields = _text_fields(cls)

    @model_validator(mode="after")
    def _refuse_unstorable_text(self) -> Self:
        for name in self._text_fields:
            value = self.__dict__[name]
            if value is not None and (why := unstorable_text(value)) is not None:
                problem = PydanticCustomError("unstorable_text", why)
                raise ValidationError.from_exception_data(
                    type(self).__name__,
                    [InitErrorDetails(type=problem, loc=(name,), input=value)],
                )
        return self


#: the largest integer a payload may carry: the audit log's canonical form (and PostgreSQL's
#: bigint) holds 64-bit integers, so a larger one could be accepted and never stored
MAX_INT64 = 2**63 - 1
#: a CTCAE grade (1 mild ... 5 death)
Grade = Annotated[int, Field(ge=1, le=5)]
