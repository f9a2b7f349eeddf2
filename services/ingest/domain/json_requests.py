"""What the JSON API accepts: strict request models, unknown fields refused.

Refusing unknown fields is deliberate: a sender that adds a patient name gets a 422
instead of having the name silently carried into Vigil.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.events.payloads import (
    LOINC_PATTERN,
    AdverseEventReported,
    ClinicalDecimal,
    MedicationRecorded,
    Qualitative,
    ResultStatus,
    Sex,
    StudyId,
    SubjectId,
)
from shared.events.values import (
    ClinicalDate,
    ClinicalDateTime,
    Code,
    SiteId,
    StorableText,
)


class RequestModel(StorableText):
    """Fields every request has: which study and which subject."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    study_id: StudyId | None = Field(
        default=None, description="Study id; the source's default study when omitted."
    )
    subject_id: SubjectId


class SubjectIn(RequestModel):
    """A subject's enrolment: site, sex, birth date and weight; never a name."""

    site_id: SiteId
    sex: Sex
    birth_date: ClinicalDate
    weight_kg: ClinicalDecimal | None = Field(default=None, gt=0, lt=500)
    day0: ClinicalDate | None = Field(default=None, description="Study Day 0 (baseline visit).")


class LabResultIn(RequestModel):
    """One analyte's result as the laboratory reported it: numeric (value and unit),
    qualitative (positive / negative / indeterminate), or text."""

    loinc_code: str | None = Field(default=None, pattern=LOINC_PATTERN, examples=["718-7"])
    local_code: Code | None = Field(default=None, max_length=64, description="Lab's own code.")
    local_system: Code | None = Field(default=None, max_length=200)
    analyte_text: str | None = Field(default=None, max_length=200)
    value: ClinicalDecimal | None = None
    comparator: Literal["<", "<=", ">", ">="] | None = None
    unit: Code | None = Field(default=None, min_length=1, max_length=32, examples=["g/dL"])
    qualitative: Qualitative | None = None
    value_text: str | None = Field(default=None, max_length=500, examples=["Reactive"])
    reference_low: ClinicalDecimal | None = None
    reference_high: ClinicalDecimal | None = None
    collected_at: ClinicalDateTime = Field(description="Specimen collection time, with offset.")
    result_status: ResultStatus = ResultStatus.FINAL
    abnormal_flags: tuple[Code, ...] = Field(default=(), max_length=10)
    source_message_id: Code = Field(
        min_length=1, max_length=128, description="The sender's id of this result or message."
    )
    observation_key: Code | None = Field(
        default=None,
        max_length=300,
        description="Send the same key with a corrected (result_status C) or cancelled "
        "(X, D, W) result to supersede the earlier one. Without it a result is known by "
        "source_message_id, loinc_code (else local_system and local_code) and collected_at "
        "together: a correction that changes the code or the time needs the key.",
    )

    @model_validator(mode="after")
    def _identified_and_valued(self) -> LabResultIn:
        if self.loinc_code is None and self.local_code is None:
            raise ValueError("give loinc_code, or local_code for the lab's own code")
        nothing = self.value is None and self.qualitative is None and self.value_text is None
        if nothing and self.result_status.is_measurement:
            raise ValueError("give value (with unit), qualitative or value_text")
        if self.value is not None and self.unit is None:
            raise ValueError("a numeric value needs its unit (UCUM), e.g. g/dL")
        return self


class AdverseEventIn(AdverseEventReported):
    """An adverse event: term (MedDRA code and system organ class when known), onset and
    end, seriousness and its criteria, severity or CTCAE grade, outcome, relatedness and
    action taken. Sending the same ``ae_id`` again records an update."""

    study_id: StudyId | None = Field(  # type: ignore[assignment]
        default=None, description="Study id; the source's default study when omitted."
    )


class ConcomitantMedicationIn(MedicationRecorded):
    """A concomitant medication: drug, dose, unit, route, frequency, start and stop."""

    study_id: StudyId | None = Field(  # type: ignore[assignment]
        default=None, description="Study id; the source's default study when omitted."
    )
    category: Literal["concomitant"] = "concomitant"


class StudyDrugAdministrationIn(MedicationRecorded):
    """One administration of a study drug (belimumab, IL-2): dose, unit, route, time."""

    study_id: StudyId | None = Field(  # type: ignore[assignment]
        default=None, description="Study id; the source's default study when omitted."
    )
    category: Literal["study-drug"] = "study-drug"


# A request body is one object or a non-empty list of them; the cap
# (VIGIL_INGEST_MAX_ITEMS_PER_REQUEST) bounds one request's work.
MAX_ITEMS_PER_REQUEST = 5000


@dataclass(frozen=True)
class WriteRoute:
    """One JSON write endpoint: its path, the body it takes, what it does."""

    path: str
    body: Any
    summary: str


def write_routes(max_items: int = MAX_ITEMS_PER_REQUEST) -> list[WriteRoute]:
    """The JSON write endpoints, each taking one item or a list of 1 to ``max_items``."""

    def one_or_many(item: type[BaseModel]) -> Any:
        return item | Annotated[list[item], Field(min_length=1, max_length=max_items)]  # type: ignore[valid-type]

    return [
        WriteRoute(
            "/v1/subjects", one_or_many(SubjectIn), "Enrol one subject or a list of subjects."
        ),
        WriteRoute(
            "/v1/lab-results", one_or_many(LabResultIn), "Report one lab result or a list of them."
        ),
        WriteRoute(
            "/v1/adverse-events",
            one_or_many(AdverseEventIn),
            "Report one adverse event (or an update of it) or a list of them.",
        ),
        WriteRoute(
            "/v1/concomitant-medications",
            one_or_many(ConcomitantMedicationIn),
            "Record one concomitant medication or a list of them.",
        ),
        WriteRoute(
            "/v1/study-drug-administrations",
            one_or_many(StudyDrugAdministrationIn),
            "Record one study-drug administration or a list of them.",
        ),
    ]


class DataQualityWarning(BaseModel):
    """A data-quality issue raised with an accepted fact: it is kept, and a data manager
    will be asked to look (a value that cannot be physiological, a unit Vigil cannot
    convert). Names the field's problem, never the value."""

    event_id: str = Field(description="The accepted fact the issue is about.")
    issue: str = Field(description="The data-quality problem, e.g. implausible-value.")
    detail: str


class Accepted(BaseModel):
    """The answer to an accepted request: the ids of the events published, and the
    data-quality issues raised with them (a warning: accepted, but not as good as sent)."""

    accepted: int
    event_ids: list[str]
    correlation_id: str
    warnings: list[DataQualityWarning] = Field(default_factory=list)
