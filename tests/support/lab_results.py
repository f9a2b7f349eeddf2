"""Lab results of one subject for the tests of the subject chart and the eDISH plot (pure):
an ALT result by default, a supersession between two, an enrolment with a Day 0."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from services.notifier.domain.subject_chart import Recorded
from shared.events import LabResultReported, LabResultSuperseded, SubjectEnrolled

D = Decimal
STUDY = "NCT05262686"


def lab(day: int, number: str, **changes: Any) -> Recorded:
    fields: dict[str, Any] = {
        "study_id": STUDY,
        "subject_id": "S-001",
        "loinc_code": "1742-6",
        "value": D(number),
        "unit": "U/L",
        "canonical_value": D(number),
        "canonical_unit": "U/L",
        "reference_low": D(7),
        "reference_high": D(40),
        "collected_at": datetime(2026, 6, 1, 2, 0, tzinfo=UTC) + timedelta(days=day),
        "source_message_id": f"M-{day}-{number}",
    }
    fields.update(changes)
    return Recorded(uuid.uuid4(), LabResultReported(**fields))


def superseded(old: Recorded, new: Recorded, reason: str) -> LabResultSuperseded:
    return LabResultSuperseded(
        study_id=STUDY,
        subject_id="S-001",
        observation_key="k",
        superseded_event_id=old.event_id,
        superseding_event_id=new.event_id,
        reason=reason,  # type: ignore[arg-type]
    )


def enrolled(day0: date) -> SubjectEnrolled:
    return SubjectEnrolled(
        study_id=STUDY,
        subject_id="S-001",
        site_id="S1",
        sex="F",  # type: ignore[arg-type]
        birth_date=date(1980, 1, 1),
        day0=day0,
    )
