"""The trial the workspace's browser tests look at: what the sites send, and what the real
rules service must make of it.

Six subjects at two sites over six weeks (screening, Day 0, Days 14, 28 and 42), each
visit drawing haemoglobin, ALT, alkaline phosphatase, total bilirubin and neutrophils,
sent to ingest's JSON API as a laboratory would, and belimumab given at each visit from
Day 0, recorded as the EDC does. A few subjects carry a scripted story, so
that every kind of page has something real to show:

- 01-001 (PKUPH-01): Hb 8.6 on Day 14, 7.6 on Day 28, 11.2 on Day 42; a mild AE. The
  anaemia signal is raised, escalated (grade 2 to 3) and resolved.
- 01-002 (PKUPH-01): ALT 4.5 x ULN with bilirubin 2.4 x ULN on Day 28, higher on Day 42. An
  open potential Hy's law case, with the liver signals.
- 01-003 (PKUPH-01): Hb 8.8 on Day 28, corrected by the lab to 7.7; 8.1 on Day 42. An open
  signal, amended by the correction.
- 01-004 (PKUPH-01): ALT in a unit Vigil cannot convert. A data-quality issue
  (unit-not-convertible).
- 02-001 (PKUPH-02): Hb 8.5 on Day 14, later reported wrong; ANC 1.2 and 1.3 on Days 28 and
  42. A retracted anaemia signal; an open neutropenia signal at site 02.
- 02-002 (PKUPH-02): ALT 3.3 x ULN on Day 42 with a normal bilirubin. An open liver signal
  at site 02 (Temple's corollary on eDISH).
- 01-099 (never enrolled): one haemoglobin. A data-quality issue (unknown-subject).

Clinical times are placed back from today, so nothing is in the future and no deadline has
passed while a test runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

STUDY = "NCT05262686"
SITE_1 = "PKUPH-01"
SITE_2 = "PKUPH-02"
VISIT_DAYS = (-7, 0, 14, 28, 42)
# 09:30 in Beijing, where both sites are (the roster's zone)
DRAWN_AT = time(1, 30, tzinfo=UTC)

HGB, ALT, ALP, BILI, ANC = "718-7", "1742-6", "6768-6", "1975-2", "751-8"
ANALYTES: dict[str, tuple[str, str | None, str]] = {
    # LOINC: (unit, reference low, reference high)
    HGB: ("g/dL", "12", "16"),
    ALT: ("U/L", None, "40"),
    ALP: ("U/L", "40", "120"),
    BILI: ("mg/dL", None, "1.2"),
    ANC: ("10*9/L", "1.8", "7.5"),
}
NORMAL = {HGB: "12.8", ALT: "24", ALP: "82", BILI: "0.6", ANC: "3.9"}
# each subject's normal values a little apart, so their eDISH points do not overlap
SPREAD = {HGB: "0.3", ALT: "3", ALP: "4", BILI: "0.07", ANC: "0.2"}


@dataclass(frozen=True)
class TrialSubject:
    subject_id: str
    site_id: str
    sex: str
    birth_date: date
    weight_kg: str
    #: day -> LOINC -> value, where it differs from NORMAL
    changes: dict[int, dict[str, str]]


SUBJECTS = (
    TrialSubject(
        "01-001", SITE_1, "F", date(1979, 4, 2), "61",
        {14: {HGB: "8.6"}, 28: {HGB: "7.6"}, 42: {HGB: "11.2"}},
    ),
    TrialSubject(
        "01-002", SITE_1, "M", date(1968, 9, 17), "74",
        {28: {ALT: "180", BILI: "2.9"}, 42: {ALT: "210", BILI: "3.1"}},
    ),
    TrialSubject(
        "01-003", SITE_1, "F", date(1988, 1, 23), "55", {28: {HGB: "8.8"}, 42: {HGB: "8.1"}}
    ),
    TrialSubject("01-004", SITE_1, "F", date(1991, 6, 30), "58", {}),
    TrialSubject(
        "02-001", SITE_2, "F", date(1983, 11, 5), "66",
        {14: {HGB: "8.5"}, 28: {ANC: "1.2"}, 42: {ANC: "1.3"}},
    ),
    TrialSubject("02-002", SITE_2, "F", date(1972, 2, 14), "70", {42: {ALT: "132"}}),
)  # fmt: skip
UNKNOWN_SUBJECT = "01-099"


@dataclass(frozen=True)
class Trial:
    """The scripted trial placed so that its last visit was ``last_visit_days_ago`` ago."""

    day0: date

    @classmethod
    def ending_recently(cls, today: date | None = None, last_visit_days_ago: int = 2) -> Trial:
        today = today or datetime.now(UTC).date()
        return cls(today - timedelta(days=VISIT_DAYS[-1] + last_visit_days_ago))

    def at(self, day: int) -> datetime:
        return datetime.combine(self.day0 + timedelta(days=day), DRAWN_AT)

    def enrolments(self) -> list[dict[str, Any]]:
        return [
            {
                "study_id": STUDY,
                "subject_id": s.subject_id,
                "site_id": s.site_id,
                "sex": s.sex,
                "birth_date": s.birth_date.isoformat(),
                "weight_kg": s.weight_kg,
                "day0": self.day0.isoformat(),
            }
            for s in SUBJECTS
        ]

    def result(
        self, subject_id: str, day: int, loinc: str, value: str, **fields: Any
    ) -> dict[str, Any]:
        unit, low, high = ANALYTES[loinc]
        body = {
            "study_id": STUDY,
            "subject_id": subject_id,
            "loinc_code": loinc,
            "value": value,
            "unit": unit,
            "reference_high": high,
            "collected_at": self.at(day).isoformat(),
            "result_status": "F",
            "source_message_id": f"LAB-{subject_id}-D{day:+03d}",
            "observation_key": observation_key(subject_id, day, loinc),
        }
        if low is not None:
            body["reference_low"] = low
        return {**body, **fields}

    def visit(self, day: int) -> list[dict[str, Any]]:
        """Every subject's results of one visit, as their laboratory first reports them."""
        found = []
        for index, subject in enumerate(SUBJECTS):
            values = {**normal_values(index), **subject.changes.get(day, {})}
            for loinc, value in values.items():
                if subject.subject_id == "01-004" and loinc == ALT and day == 28:
                    # a unit no conversion knows for ALT: kept, and a data-quality issue
                    found.append(self.result("01-004", day, ALT, "0.4", unit="g/dL"))
                    continue
                found.append(self.result(subject.subject_id, day, loinc, value))
        return found

    def follow_ups(self) -> list[dict[str, Any]]:
        """What the laboratories send afterwards: a correction, a retraction, and a result
        for a subject nobody enrolled."""
        return [
            self.result("01-003", 28, HGB, "7.7", result_status="C"),
            {
                key: value
                for key, value in self.result("02-001", 14, HGB, "8.5").items()
                if key not in {"value", "unit", "reference_low", "reference_high"}
            }
            | {"result_status": "W"},
            self.result(UNKNOWN_SUBJECT, 28, HGB, "12.1"),
        ]

    def study_drug(self) -> list[dict[str, Any]]:
        """Belimumab 10 mg/kg IV for every subject on Day 0 and every 14 days after."""
        return [
            {
                "study_id": STUDY,
                "subject_id": subject.subject_id,
                "medication_id": f"BEL-{day}",
                "drug": "belimumab",
                "dose": "10",
                "dose_unit": "mg/kg",
                "route": "intravenous",
                "frequency": "Q4W",
                "start": (self.at(day) + timedelta(hours=1)).isoformat(),
                "stop": (self.at(day) + timedelta(hours=2)).isoformat(),
                "source_message_id": f"EDC-{subject.subject_id}-BEL-{day}",
            }
            for subject in SUBJECTS
            for day in (0, 14, 28, 42)
        ]

    def adverse_events(self) -> list[dict[str, Any]]:
        """A mild, non-serious event for 01-001 (the subject page's timeline)."""
        return [
            {
                "study_id": STUDY,
                "subject_id": "01-001",
                "ae_id": "AE-01-001-1",
                "term": "Fatigue",
                "onset": self.at(16).isoformat(),
                "end": self.at(20).isoformat(),
                "serious": False,
                "severity": "mild",
                "ctcae_grade": 1,
                "outcome": "recovered",
                "source_message_id": "EDC-01-001-AE-1",
            }
        ]


def normal_values(index: int) -> dict[str, str]:
    """The ``index``-th subject's values when nothing is wrong: in range, each its own."""
    offset = Decimal(index) - 2
    return {
        loinc: str(Decimal(value) + offset * Decimal(SPREAD[loinc]))
        for loinc, value in NORMAL.items()
    }


def observation_key(subject_id: str, day: int, loinc: str) -> str:
    """What stays the same when the laboratory corrects or cancels a result."""
    return f"LAB-{subject_id}-D{day:+03d}-{loinc}"


@dataclass(frozen=True)
class Expected:
    """One event the real pipeline must have written: its type (short, after
    ``org.vigil.``), subject, and optionally the rule or data-quality issue."""

    event_type: str
    subject_id: str
    rule_id: str | None = None
    issue: str | None = None


ANAEMIA, HYS_LAW, NEUTROPENIA = "anaemia-hb-le-9", "hys-law", "neutropenia-anc-lt-1-5"
LIVER = "liver-alt-ast-gt-3-uln"
EXPECTED = (
    Expected("safety_signal.raised.v1", "01-001", ANAEMIA),
    Expected("safety_signal.escalated.v1", "01-001", ANAEMIA),
    Expected("safety_signal.resolved.v1", "01-001", ANAEMIA),
    Expected("safety_signal.raised.v1", "01-002", HYS_LAW),
    Expected("safety_signal.raised.v1", "01-002", LIVER),
    Expected("safety_signal.raised.v1", "01-003", ANAEMIA),
    Expected("lab_result.superseded.v1", "01-003"),
    Expected("safety_signal.amended.v1", "01-003", ANAEMIA),
    Expected("safety_signal.raised.v1", "02-001", ANAEMIA),
    Expected("lab_result.superseded.v1", "02-001"),
    Expected("safety_signal.retracted.v1", "02-001", ANAEMIA),
    Expected("safety_signal.raised.v1", "02-001", NEUTROPENIA),
    Expected("safety_signal.raised.v1", "02-002", LIVER),
    Expected("data_quality.issue_raised.v1", "01-004", issue="unit-not-convertible"),
    Expected("data_quality.issue_raised.v1", UNKNOWN_SUBJECT, issue="unknown-subject"),
)
