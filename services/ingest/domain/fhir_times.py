"""When a FHIR resource says something happened, as one moment (pure).

FHIR R4 ``dateTime`` may be partial: ``2026``, ``2026-11`` or ``2026-11-03`` name a year,
a month or a day (datatypes.html#dateTime), and fhir.resources hands the first two back as
the text sent. Each is taken as the first moment of the period it names, in the study's
time zone when it carries none, and the event says how precise it was
(``collected_precision``); the resource as sent stays with its receipt.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, tzinfo
from typing import Any

from shared.events.payloads import TimePrecision

# YYYY or YYYY-MM, as fhir.resources passes a partial date on (it has checked the form)
_PARTIAL = re.compile(r"(\d{4})(?:-(\d{2}))?")


def moment(value: Any, zone: tzinfo) -> datetime | None:
    """The first moment of what ``value`` names: a date-time as sent (in ``zone`` when it
    has no offset), a day, month or year from its start; None for anything else."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=zone)
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=zone)
    if isinstance(value, str) and (partial := _PARTIAL.fullmatch(value)):
        year, month = partial.groups()
        return datetime(int(year), int(month or 1), 1, tzinfo=zone)
    return None


def precision(value: Any) -> TimePrecision | None:
    """How precisely ``value`` dates its moment when less than to the second: a day, a
    month or a year (FHIR's dateTime has seconds whenever it has a time)."""
    if isinstance(value, datetime):
        return None
    if isinstance(value, date):
        return "day"
    if isinstance(value, str) and (partial := _PARTIAL.fullmatch(value)):
        return "month" if partial[2] else "year"
    return None


def effective(
    date_time: Any, instant: Any, period: Any, zone: tzinfo
) -> tuple[datetime | None, TimePrecision | None]:
    """An Observation's ``effective[x]`` as one moment, with how precisely it was dated:
    ``effectiveDateTime``, ``effectiveInstant`` (always exact), or an
    ``effectivePeriod``'s start, else its end (a sample collected over a period, such as
    a 24-hour urine, is dated by when collection began when the sender says so, else by
    when it ended)."""
    if date_time is not None:
        value = date_time
    elif instant is not None:
        return moment(instant, zone), None
    elif period is not None:
        value = period.start if moment(period.start, zone) is not None else period.end
    else:
        return None, None
    return moment(value, zone), precision(value)


def contradictions(
    period: Any, issued: Any, collected: datetime | None, zone: tzinfo
) -> list[tuple[str, str]]:
    """The times of an Observation that contradict each other, as (element, problem): an
    ``effectivePeriod`` that ends before it starts (FHIR R4 Period invariant per-1: "start
    SHALL have a lower value than end"), and an ``issued`` (made available, after
    verification) before the specimen's collection. Such a result cannot be placed in
    time and is refused naming the element (issue 15 item 11). Partial times are compared
    by their first moment, the earliest they can mean, so a precision never refuses."""
    found = []
    if period is not None:
        start, end = moment(period.start, zone), moment(period.end, zone)
        if start is not None and end is not None and start > end:
            found.append(
                (
                    "Observation.effectivePeriod",
                    "effectivePeriod ends before it starts (FHIR R4 Period per-1): the "
                    "collection time cannot be placed",
                )
            )
    issued_at = moment(issued, zone) if issued is not None else None
    if issued_at is not None and collected is not None and issued_at < collected:
        found.append(
            (
                "Observation.issued",
                "issued is before the collection time (effective[x]): a result cannot be "
                "made available before its specimen was collected",
            )
        )
    return found
