"""Hypothesis strategies for raw event payloads: plausible values with a hostile one mixed in.

A payload is drawn from the model's own field annotations (so a field added later is drawn
too) as a sender sends it: times and numbers as strings, as in JSON. Every field gets a
plausible value (the study's LOINC codes, a few subjects, clinical years), and often one
field gets a hostile one instead: years 1 to 9999 with offsets up to ±23:59, numbers such
as ``1E+400`` or 28 digits, NUL characters, lone surrogates, control characters, long text.
So many drawn payloads are accepted, judged together, and sit at the edge of what is
accepted. The property they serve: whatever a payload class accepts can be stored and judged.
"""

from __future__ import annotations

import base64
import enum
import functools
import re
import types
import typing
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st
from pydantic import AwareDatetime, BaseModel, ValidationError
from pydantic.fields import FieldInfo

from shared.analytes import ANALYTES
from shared.events import (
    AdverseEventReported,
    EventPayload,
    LabResultReported,
    MedicationRecorded,
    SubjectEnrolled,
)
from shared.events.payloads import _PAYLOADS

STUDY = "NCT05262686"
SUBJECTS = ("01-001", "01-002", "01-003")
LOINC_CODES = tuple(
    sorted(
        {code for analyte in ANALYTES for code in analyte.loinc_codes}
        | {"88020-3", "7918-6", "16128-1", "2106-3", "62238-1"}
    )
)
UNITS = ("g/dL", "g/L", "mmol/L", "10*9/L", "/uL", "U/L", "ukat/L", "umol/L", "mg/dL")
UNITS += ("mL/s", "mL/min", "kg", "lb", "mg", "%", "[iU]")
DRUGS = ("prednisone", "methylprednisolone", "hydroxychloroquine", "ceftriaxone", "belimumab")

HOSTILE_TEXT = st.sampled_from(
    ["a\x00b", "\x00", "\ud800", "x\udfff", "\r\n", "\t", "\x1b[31m", "\u2028", "é" * 3, " ", ""]
)
HOSTILE_NUMBERS = st.sampled_from(
    [
        "1E+400",
        "-1E+400",
        "1E-400",
        "1E+15",
        "-1E+15",
        "1.000000000000001E+15",
        "999999999999999.99",
        "1E-15",
        "9.9E-16",
        "0.1234567890123456789012345678",
        "0.00000000000000000000000000000001",
        "1.2345678901234567E-20",
        "NaN",
        "Infinity",
        "-0",
        "0E-1000",
        "0",
    ]
)
_OFFSETS = st.one_of(
    st.integers(-14 * 60, 14 * 60).map(lambda minutes: timedelta(minutes=minutes)),
    st.integers(-(24 * 3600 - 1), 24 * 3600 - 1).map(lambda seconds: timedelta(seconds=seconds)),
    st.timedeltas(-timedelta(hours=23, minutes=59), timedelta(hours=23, minutes=59)),
).map(timezone)
_PLAIN_TEXT = st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=30)


def _constraints(metadata: list[Any]) -> list[Any]:
    """Constraint objects, with those inside a FieldInfo (``Annotated[str, Field(...)]``)."""
    flat: list[Any] = []
    for item in metadata:
        flat += _constraints(item.metadata) if isinstance(item, FieldInfo) else [item]
    return flat


def _text(metadata: list[Any], hostile: bool) -> st.SearchStrategy[str]:
    constraints = _constraints(metadata)
    pattern = next((m.pattern for m in constraints if getattr(m, "pattern", None)), None)
    longest = next((m.max_length for m in constraints if getattr(m, "max_length", None)), 80)
    if hostile:
        return st.one_of(HOSTILE_TEXT, st.text(min_size=longest - 2, max_size=longest + 2))
    if pattern is not None:
        return st.from_regex(re.compile(pattern), fullmatch=True).filter(
            lambda text: 0 < len(text) <= longest
        )
    return st.one_of(_PLAIN_TEXT, _PLAIN_TEXT.map(lambda text: f"{text}\n{text}"))


def _moments(hostile: bool) -> st.SearchStrategy[str]:
    if hostile:
        edges = st.one_of(
            st.datetimes(datetime(1899, 12, 30), datetime(1900, 1, 2), timezones=_OFFSETS),
            st.datetimes(datetime(2200, 12, 30), datetime(2201, 1, 2), timezones=_OFFSETS),
            st.datetimes(timezones=_OFFSETS),
        )
        return edges.map(datetime.isoformat)
    clinical = st.datetimes(datetime(2025, 1, 1), datetime(2027, 12, 31), timezones=_OFFSETS)
    return clinical.map(datetime.isoformat)


def _days(hostile: bool) -> st.SearchStrategy[str]:
    days = st.dates() if hostile else st.dates(date(1940, 1, 1), date(2027, 12, 31))
    return days.map(date.isoformat)


def _numbers(hostile: bool) -> st.SearchStrategy[Any]:
    if hostile:
        return st.one_of(HOSTILE_NUMBERS, st.decimals(allow_nan=True).map(str))
    return st.one_of(
        st.decimals(min_value=-5, max_value=900, places=2).map(str), st.integers(1, 99)
    )


@functools.cache
def _json_values(hostile: bool) -> st.SearchStrategy[Any]:
    text = HOSTILE_TEXT if hostile else _PLAIN_TEXT
    numbers = st.floats() if hostile else st.floats(allow_nan=False, allow_infinity=False)
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**60), 2**60), numbers, text)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_PLAIN_TEXT, inner),
        max_leaves=6,
    )


_NAMED: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    # field: (plausible, hostile)
    "study_id": (st.just(STUDY), st.sampled_from(["OTHER-STUDY", "bad study", "NCT\x00"])),
    "subject_id": (st.sampled_from(SUBJECTS), st.sampled_from(["01 003", "01-003\x00", ""])),
    "site_id": (st.sampled_from(["PKUPH-01", "PKUPH-02"]), st.sampled_from(["site 1", "a/b"])),
    "loinc_code": (st.sampled_from(LOINC_CODES), st.sampled_from(["718 7", "718-7\n"])),
    "unit": (st.sampled_from(UNITS), HOSTILE_TEXT),
    "dose_unit": (st.sampled_from(["mg", "g", "mg/kg", "[iU]"]), HOSTILE_TEXT),
    "drug": (st.sampled_from(DRUGS), HOSTILE_TEXT),
    "route": (st.sampled_from(["oral", "intravenous", "subcutaneous"]), HOSTILE_TEXT),
    "raw_base64": (st.binary(max_size=40).map(lambda raw: base64.b64encode(raw).decode()),) * 2,
}


def _for_type(annotation: Any, metadata: list[Any], hostile: bool) -> st.SearchStrategy[Any]:
    """A value for a field's type; ``metadata`` holds its constraints (pattern, length)."""
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _for_type(arguments[0], [*metadata, *annotation.__metadata__], hostile)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(_for_type(argument, metadata, hostile) for argument in arguments))
    if origin is typing.Literal:
        return HOSTILE_TEXT if hostile else st.sampled_from(arguments)
    if origin is tuple:  # the tuple's own length limit is not its items'
        return st.lists(_for_type(arguments[0], [], hostile), max_size=3).map(tuple)
    if origin is dict:
        return st.dictionaries(_PLAIN_TEXT, _json_values(hostile), max_size=4)
    if annotation is type(None):
        return st.none()
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        members = [member.value for member in annotation]
        return HOSTILE_TEXT if hostile else st.sampled_from(members)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return raw_payloads(annotation)
    if annotation in (datetime, AwareDatetime):
        return _moments(hostile)
    simple: dict[Any, st.SearchStrategy[Any]] = {
        bool: st.booleans(),
        int: st.integers() if hostile else st.integers(1, 5),
        float: st.floats() if hostile else st.floats(0, 1000),
        Decimal: _numbers(hostile),
        date: _days(hostile),
        uuid.UUID: st.uuids().map(str),
        str: _text(metadata, hostile),
        Any: _json_values(hostile),
    }
    if annotation in simple:
        return simple[annotation]
    raise TypeError(f"no strategy for {annotation!r}: add one to payload_strategies.py")


@functools.cache
def _field_strategies(
    model: type[BaseModel],
) -> dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]]:
    """Each field's (plausible, hostile) strategies, built once per model."""
    hints = typing.get_type_hints(model, include_extras=True)
    return {
        name: _NAMED.get(name)
        or (
            _for_type(hints[name], list(info.metadata), hostile=False),
            _for_type(hints[name], list(info.metadata), hostile=True),
        )
        for name, info in model.model_fields.items()
    }


@st.composite
def raw_payloads(draw: st.DrawFn, model: type[BaseModel]) -> dict[str, Any]:
    """Raw field values for ``model``: optional fields sometimes left out, and often one
    field given a hostile value."""
    strategies = _field_strategies(model)
    spoiled = draw(st.sampled_from(list(strategies))) if draw(st.booleans()) else None
    raw: dict[str, Any] = {}
    for name, (plausible, hostile) in strategies.items():
        required = model.model_fields[name].is_required()
        if not required and name != spoiled and draw(st.booleans()):
            continue
        raw[name] = draw(hostile if name == spoiled else plausible)
    return raw


FACTS: tuple[type[EventPayload], ...] = (
    SubjectEnrolled,
    LabResultReported,
    AdverseEventReported,
    MedicationRecorded,
)
# facts most often, since the rules judge them; every registered type now and then
KINDS = st.one_of(
    st.sampled_from(FACTS),
    st.sampled_from(FACTS),
    st.sampled_from(sorted(_PAYLOADS.values(), key=str)),
)


@st.composite
def accepted_batches(draw: st.DrawFn) -> list[EventPayload]:
    """Up to eight payloads that their types accepted (the refused ones are dropped)."""
    accepted: list[EventPayload] = []
    for _ in range(draw(st.integers(1, 8))):
        kind: type[EventPayload] = draw(KINDS)
        raw: dict[str, Any] = draw(raw_payloads(kind))
        try:
            accepted.append(kind.model_validate(raw))
        except ValidationError:
            continue  # refused at the door: a 422 / AE, which is the point
    return accepted
