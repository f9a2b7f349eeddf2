"""Times that cannot be right when they arrive: a specimen collected or a medication
started in the future, a subject born in the future or longer ago than anyone has lived
(pure; "now" is given).

What no payload model can know is "now", so these checks run at ingest with its clock,
and what fails them is refused naming the field (HL7 AE with an ERR, FHIR 422 with an
OperationOutcome, JSON 422): a time that cannot be placed cannot be judged. A time before
1900 is already refused by the payload's types (``shared.events.values``), and Day 0
before birth by ``SubjectEnrolled`` itself. The rules service, which knows the subject's
birth date, sets aside a result collected before it (``implausible-time``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from shared.events import LabResultReported, MedicationRecorded, SubjectEnrolled
from shared.events.payloads import EventPayload

#: how far ahead of ingest's clock a sender's clock may run (a setting:
#: VIGIL_INGEST_CLOCK_SKEW_SECONDS); beyond it a collection time is in the future
DEFAULT_CLOCK_SKEW = timedelta(days=1)
#: the oldest verified human lived 122 years (Jeanne Calment, 1875-1997): a birth date
#: earlier than this many years ago is a typing error
OLDEST_AGE_YEARS = 125


@dataclass(frozen=True)
class TimeProblem:
    """One time that cannot be right: the payload's field and why, never the value."""

    field: str
    problem: str


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


#: how far ahead a collection time written with an explicit UTC offset may be: it is an
#: absolute instant (HL7 v2.5.1 DTM with its offset, RFC 3339), so only a wrong offset can
#: move it, and none moves it further than the widest offset any zone has (14 h: a local
#: time of UTC+14 labelled "Z"); the whole-day allowance is for times sent without one
OFFSET_SENT_SKEW = timedelta(hours=14)


def time_problems(
    event: EventPayload,
    now: datetime,
    skew: timedelta = DEFAULT_CLOCK_SKEW,
    *,
    offset_sent: bool = False,
) -> list[TimeProblem]:
    """The times of ``event`` that cannot be right at ``now`` (empty when all can);
    ``offset_sent`` when the collection time came with its own UTC offset."""
    if offset_sent and isinstance(event, LabResultReported):
        skew = min(skew, OFFSET_SENT_SKEW)
    latest = now + skew
    hours = f"{skew.total_seconds() / 3600:g} h"
    if isinstance(event, LabResultReported) and event.collected_at > latest:
        return [
            TimeProblem(
                "collected_at",
                f"is in the future (more than the {hours} clock skew allowed after the time "
                "it was received): a specimen cannot be collected after it is reported",
            )
        ]
    if isinstance(event, MedicationRecorded) and event.start > latest:
        return [
            TimeProblem(
                "start",
                f"is in the future (more than the {hours} clock skew allowed after the time "
                "it was received): a medication cannot have started after it is recorded",
            )
        ]
    if isinstance(event, SubjectEnrolled):
        if event.birth_date > latest.date():
            return [TimeProblem("birth_date", "is in the future: nobody is born after enrolling")]
        if event.birth_date < _years_before(now.date(), OLDEST_AGE_YEARS):
            return [
                TimeProblem(
                    "birth_date",
                    f"is more than {OLDEST_AGE_YEARS} years ago, older than anyone has lived",
                )
            ]
    return []
