"""Event payloads: immutable, typed, versioned in their type name.

A breaking change to a payload is a new class with a new ``...v2`` type, never an edit.
"""

from __future__ import annotations

import json
import uuid
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer

# Namespace for content-derived event ids (uuid5); never change it, ids depend on it.
EVENT_ID_NAMESPACE = uuid.UUID("6f1c1a3e-3f0e-4c59-9d7a-5d0f2a8c9e10")


def _decimal_as_json_number(value: Decimal) -> float | int:
    return int(value) if value == value.to_integral_value() and abs(value) < 2**53 else float(value)


# Lab values stay exact in Python and travel as JSON numbers.
ClinicalDecimal = Annotated[
    Decimal, PlainSerializer(_decimal_as_json_number, return_type=int | float, when_used="json")
]
StudyId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
SubjectId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]


class EventPayload(BaseModel):
    """Base of all payloads; every payload belongs to one study and one subject."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    event_type: ClassVar[str]

    study_id: StudyId
    subject_id: SubjectId

    def content_id(self) -> uuid.UUID:
        """A stable id derived from the type and the canonical content of the payload."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return uuid.uuid5(EVENT_ID_NAMESPACE, f"{self.event_type}:{canonical}")


class Sex(StrEnum):
    """Administrative sex as HL7 v2 table 0001 codes it (F, M, O, U)."""

    FEMALE = "F"
    MALE = "M"
    OTHER = "O"
    UNKNOWN = "U"


class SubjectEnrolled(EventPayload):
    """A subject joined the study at a site; carries what the rules need, never a name."""

    event_type: ClassVar[str] = "org.vigil.subject.enrolled.v1"

    site_id: str = Field(min_length=1, max_length=64)
    sex: Sex
    birth_date: date
    weight_kg: ClinicalDecimal | None = Field(default=None, gt=0, lt=500)


class ResultStatus(StrEnum):
    """Result status as HL7 v2 OBX-11 codes it."""

    FINAL = "F"
    CORRECTED = "C"
    PRELIMINARY = "P"
    CANNOT_OBTAIN = "X"
    DELETED = "D"
    WRONG = "W"


class LabResultReported(EventPayload):
    """One analyte's result from a laboratory, as reported (units not yet converted)."""

    event_type: ClassVar[str] = "org.vigil.lab_result.reported.v1"

    loinc_code: str = Field(pattern=r"^\d{1,7}-\d$", description="LOINC code, e.g. 718-7.")
    value: ClinicalDecimal
    unit: str = Field(min_length=1, max_length=32, description="UCUM unit as reported.")
    reference_low: ClinicalDecimal | None = None
    reference_high: ClinicalDecimal | None = None
    collected_at: AwareDatetime
    result_status: ResultStatus = ResultStatus.FINAL
    source_message_id: str = Field(min_length=1, max_length=128)


class SafetySignalRaised(EventPayload):
    """A rule of the study's pack fired; carries everything needed to explain it later."""

    event_type: ClassVar[str] = "org.vigil.safety_signal.raised.v1"

    signal_id: uuid.UUID
    rule_id: str
    rule_title: str
    rule_pack_version: str
    site_id: str | None = Field(description="None when the subject is not (yet) enrolled.")
    input_event_ids: tuple[uuid.UUID, ...]
    computed_values: dict[str, Any]
    analyte: str
    observed_value: ClinicalDecimal
    observed_unit: str
    threshold: str = Field(description="The condition in words, e.g. '<= 9 g/dL'.")
    collected_at: AwareDatetime
    severity: Literal["protocol-threshold"] = "protocol-threshold"


_PAYLOADS: dict[str, type[EventPayload]] = {
    cls.event_type: cls for cls in (SubjectEnrolled, LabResultReported, SafetySignalRaised)
}


def payload_class(event_type: str) -> type[EventPayload]:
    """The payload model for an event type; unknown types are an error naming the known ones."""
    try:
        return _PAYLOADS[event_type]
    except KeyError:
        known = ", ".join(sorted(_PAYLOADS))
        raise ValueError(f"unknown event type {event_type!r}; known types: {known}") from None
