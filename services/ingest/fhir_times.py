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
