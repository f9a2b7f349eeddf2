"""Event payloads: immutable, typed, versioned in their type name.

A breaking change to a payload is a new class with a new ``...v2`` type, never an edit.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from shared.events.values import (
    IDENTIFIER_PATTERN,
    MAX_INT64,
    ClinicalDate,
    ClinicalDateTime,
    Code,
    DerivedDecimal,
    Grade,
    SiteId,
    StorableText,
)

# re-exported: the channels' request models import these from here
from shared.events.values import ClinicalDecimal as ClinicalDecimal
from shared.events.values import StudyId as StudyId
from shared.events.values import SubjectId as SubjectId
from shared.nyha import normalised_nyha_field

# Namespace for content-derived event ids (uuid5); never change it, ids depend on it.
EVENT_ID_NAMESPACE = uuid.UUID("6f1c1a3e-3f0e-4c59-9d7a-5d0f2a8c9e10")


# The study's pseudonymous subject id: never a name, a record number or free text.
SUBJECT_ID_PATTERN = IDENTIFIER_PATTERN
SUBJECT_ID_MAX_LENGTH = 64
SUBJECT_ID_FORM = "1 to 64 letters, digits, '.', '_' or '-'"
LOINC_PATTERN = r"^\d{1,7}-\d$"
MEDDRA_PATTERN = r"^\d{8}$"
_SUBJECT_ID = re.compile(SUBJECT_ID_PATTERN)


def is_subject_id(text: str) -> bool:
    """Whether ``text`` fits the subject-id grammar (what every channel must check before
    it builds an event, so that a misfit is a field problem and not a crash)."""
    return len(text) <= SUBJECT_ID_MAX_LENGTH and _SUBJECT_ID.match(text) is not None


class EventPayload(StorableText):
    """Base of all payloads: immutable, strict, with a content-derived identity."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    event_type: ClassVar[str]

    def content_id(self) -> uuid.UUID:
        """A stable id derived from the type and the canonical content of the payload."""
        return self.content_id_of(self.model_dump(mode="json"))

    def content_id_of(self, data: dict[str, Any]) -> uuid.UUID:
        """``content_id`` from this payload's ``model_dump(mode="json")``, when the caller
        already has it (the envelope's ``data``): one dump instead of two."""
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return uuid.uuid5(EVENT_ID_NAMESPACE, f"{self.event_type}:{canonical}")

    @property
    def study(self) -> str | None:
        """The study the event belongs to, when known."""
        return None

    @property
    def subject_key(self) -> str | None:
        """``study_id/subject_id`` for events about a subject: the CloudEvents subject and
        the Kafka key, so one subject's events stay in order."""
        return None

    @property
    def stream_id(self) -> str:
        """The event-store stream this event belongs to."""
        raise NotImplementedError

    @property
    def clinical_time(self) -> datetime | None:
        """When the fact happened in the clinic (e.g. specimen collection), when it applies."""
        return None


def subject_stream(study_id: str, subject_id: str) -> str:
    """The event-store stream of one subject: its facts and what the rules made of them."""
    return f"subject-{study_id}/{subject_id}"


class SubjectEvent(EventPayload):
    """An event about one study subject; it lives in the subject's stream."""

    study_id: StudyId
    subject_id: SubjectId

    @property
    def study(self) -> str | None:
        return self.study_id

    @property
    def subject_key(self) -> str | None:
        return f"{self.study_id}/{self.subject_id}"

    @property
    def stream_id(self) -> str:
        return subject_stream(self.study_id, self.subject_id)


class Sex(StrEnum):
    """Administrative sex as HL7 v2 table 0001 codes it (F, M, O, U)."""

    FEMALE = "F"
    MALE = "M"
    OTHER = "O"
    UNKNOWN = "U"


class SubjectEnrolled(SubjectEvent):
    """A subject joined the study at a site; carries what the rules need, never a name."""

    event_type: ClassVar[str] = "org.vigil.subject.enrolled.v1"

    site_id: SiteId
    sex: Sex
    birth_date: ClinicalDate
    weight_kg: ClinicalDecimal | None = Field(default=None, gt=0, lt=500)
    day0: ClinicalDate | None = Field(
        default=None,
        description="Study Day 0 (baseline visit); baseline values are the last on or before it.",
    )

    @field_validator("day0")
    @classmethod
    def _day0_after_birth(cls, day0: date | None, info: ValidationInfo) -> date | None:
        birth = info.data.get("birth_date")  # absent when it failed its own checks
        if day0 is not None and birth is not None and day0 < birth:
            raise ValueError("is before birth_date: one of the two is wrong")
        return day0


class ResultStatus(StrEnum):
    """Result status as HL7 v2 OBX-11 codes it."""

    FINAL = "F"
    CORRECTED = "C"
    PRELIMINARY = "P"
    CANNOT_OBTAIN = "X"
    DELETED = "D"
    WRONG = "W"

    @property
    def is_measurement(self) -> bool:
        """False for X (cannot obtain), D (deleted) and W (wrong): no value to judge, and
        a later one of these retracts the earlier report."""
        return self not in _NOT_A_MEASUREMENT


_NOT_A_MEASUREMENT = frozenset(
    {ResultStatus.CANNOT_OBTAIN, ResultStatus.DELETED, ResultStatus.WRONG}
)

Qualitative = Literal["positive", "negative", "indeterminate"]
#: how a censored value relates to its number (HL7 v2.5.1 SN, FHIR R4 Quantity.comparator)
Comparator = Literal["<", "<=", ">", ">="]
#: how precisely a sender dated something, when less than to the second (a partial date)
TimePrecision = Literal["year", "month", "day", "hour", "minute"]


class LabResultReported(SubjectEvent):
    """One analyte's result from a laboratory: as reported, plus its canonical form.

    The reported value, unit and coding are kept as sent; ``canonical_value`` and
    ``canonical_unit`` are the value in the catalogue's canonical unit when Vigil knows the
    analyte and can convert the unit. An analyte Vigil does not know is kept and marked
    ``unmapped``; a result is never dropped for being unfamiliar.
    """

    event_type: ClassVar[str] = "org.vigil.lab_result.reported.v1"

    loinc_code: str | None = Field(
        default=None, pattern=LOINC_PATTERN, description="LOINC code, e.g. 718-7."
    )
    local_code: Code | None = Field(default=None, max_length=64, description="Sender's code.")
    local_system: Code | None = Field(default=None, max_length=200)
    analyte_text: str | None = Field(default=None, max_length=200, description="As sent.")
    unmapped: bool = Field(default=False, description="Not in Vigil's analyte catalogue.")
    value: ClinicalDecimal | None = None
    comparator: Comparator | None = Field(
        default=None, description="For a censored value such as '<0.5' (HL7 SN, FHIR)."
    )
    unit: Code | None = Field(
        default=None, min_length=1, max_length=32, description="UCUM unit as reported."
    )
    qualitative: Qualitative | None = Field(
        default=None, description="positive, negative or indeterminate, for coded results."
    )
    value_text: str | None = Field(
        default=None, max_length=500, description="The result as sent when not numeric."
    )
    canonical_value: ClinicalDecimal | None = None
    canonical_unit: Code | None = Field(default=None, max_length=32)
    reference_low: ClinicalDecimal | None = None
    reference_high: ClinicalDecimal | None = None
    collected_at: ClinicalDateTime
    collected_precision: TimePrecision | None = Field(
        default=None,
        description="Set when the sender dated the collection less precisely than to the "
        "second (HL7 DTM '202611', FHIR '2026-11'): collected_at is then the first moment "
        "of that year, month, day, hour or minute. None: as precise as a second or finer.",
    )
    result_status: ResultStatus = ResultStatus.FINAL
    abnormal_flags: tuple[Code, ...] = Field(
        default=(), max_length=10, description="HL7 OBX-8 as sent."
    )
    source_message_id: Code = Field(min_length=1, max_length=128)
    observation_key: Code | None = Field(
        default=None,
        max_length=300,
        description="What stays the same when the lab corrects or cancels this result "
        "(HL7: filler order, test code and sub-id; FHIR: the Observation's identifier, "
        "system and value); when not given, the source message id with the analyte's "
        "code and the collection time.",
    )

    @property
    def identity(self) -> str:
        """The observation this result reports on, across corrections: its
        ``observation_key``, else its ``source_message_id`` with what tells one result of
        a message from another (the analyte's code, LOINC else the sender's own, and the
        collection time as an instant): a message's id alone would make its haemoglobin
        and its platelets, or two serial samples, one observation."""
        if self.observation_key:
            return self.observation_key
        code = self.loinc_code or f"{self.local_system or ''}|{self.local_code or ''}"
        collected = self.collected_at.astimezone(UTC).isoformat()
        return f"{self.source_message_id}|{code}|{collected}"

    @model_validator(mode="after")
    def _identified_and_valued(self) -> LabResultReported:
        if self.loinc_code is None and self.local_code is None:
            raise ValueError("a result needs a loinc_code or a local_code")
        has_result = (
            self.value is not None or self.qualitative is not None or self.value_text is not None
        )
        if not has_result and self.result_status.is_measurement:
            raise ValueError("a result needs a value, a qualitative result or a value_text")
        return self

    @property
    def clinical_time(self) -> datetime | None:
        return self.collected_at


class LabResultUnreadable(SubjectEvent):
    """A laboratory sent a result for this subject that Vigil cannot read (a value that
    is not of its declared type, a time that is no date, a code in a coding system that
    says LOINC but is not): kept and said, never dropped. The message's readable results
    were recorded beside it; the raw message stays with its receipt. ``problem`` names
    the field and what is wrong with it, never the value."""

    event_type: ClassVar[str] = "org.vigil.lab_result.unreadable.v1"

    source_message_id: Code = Field(min_length=1, max_length=128)
    segment: str = Field(
        min_length=1, max_length=32, description="Where in the message: 'OBX[3]', 'entry[2]'."
    )
    field: str = Field(min_length=1, max_length=32, description="'OBX-5', 'Observation.value'.")
    problem: str = Field(min_length=1, max_length=300, description="In words; value-free.")
    error_code: str | None = Field(
        default=None, max_length=8, description="HL7 table 0357 code, when from HL7 v2."
    )
    loinc_code: str | None = Field(default=None, pattern=LOINC_PATTERN)
    local_code: Code | None = Field(default=None, max_length=64)
    local_system: Code | None = Field(default=None, max_length=200)
    analyte_text: str | None = Field(default=None, max_length=200)
    result_status: ResultStatus | None = None
    collected_at: ClinicalDateTime | None = None
    abnormal_flags: tuple[Code, ...] = Field(default=(), max_length=10)

    @property
    def flagged_abnormal(self) -> bool:
        """Whether the sender's flags say abnormal or positive (see :func:`abnormal`)."""
        return abnormal(self.abnormal_flags)

    @property
    def clinical_time(self) -> datetime | None:
        return self.collected_at


#: HL7 table 0078 flags (and FHIR v3 ObservationInterpretation codes) that say nothing is
#: abnormal; every other flag is read as abnormal or positive
_NOT_ABNORMAL = frozenset({"N", "NEG", "ND", "NR", "S"})


def abnormal(flags: tuple[str, ...]) -> bool:
    """Whether a sender's flags say abnormal or positive (HL7 table 0078 / FHIR
    ObservationInterpretation): any flag but normal, negative or not detected."""
    return any(flag.upper() not in _NOT_ABNORMAL for flag in flags)


SeriousnessCriterion = Literal[
    "death",
    "life-threatening",
    "hospitalisation",
    "disability",
    "congenital-anomaly",
    "other-important-medical-event",
]
Relatedness = Literal["related", "possibly-related", "unlikely-related", "not-related", "unknown"]
AdverseEventOutcome = Literal[
    "recovered", "recovering", "not-recovered", "recovered-with-sequelae", "fatal", "unknown"
]


class AdverseEventReported(SubjectEvent):
    """An adverse event as the site reported it (a new report of the same ``ae_id`` is an
    update: the latest report stands, the earlier ones stay in the record)."""

    event_type: ClassVar[str] = "org.vigil.adverse_event.reported.v1"

    ae_id: Code = Field(min_length=1, max_length=128, description="The site's id of the AE.")
    term: str = Field(min_length=1, max_length=500, description="Verbatim or MedDRA term.")
    meddra_code: str | None = Field(default=None, pattern=MEDDRA_PATTERN)
    system_organ_class: str | None = Field(default=None, max_length=200)
    system_organ_class_code: str | None = Field(default=None, pattern=MEDDRA_PATTERN)
    onset: ClinicalDateTime
    end: ClinicalDateTime | None = None
    serious: bool
    seriousness_criteria: tuple[SeriousnessCriterion, ...] = ()
    severity: Literal["mild", "moderate", "severe"] | None = None
    ctcae_grade: int | None = Field(default=None, ge=1, le=5)
    outcome: AdverseEventOutcome = "unknown"
    relatedness: Literal[
        "related", "possibly-related", "unlikely-related", "not-related", "unknown"
    ] = "unknown"
    action_taken: Literal[
        "none", "dose-reduced", "dose-interrupted", "drug-withdrawn", "not-applicable", "unknown"
    ] = "unknown"
    nyha_class: Literal["I", "II", "III", "IV"] | None = Field(
        default=None,
        description="For heart failure: NYHA functional class (a site's IIIb, 3, Ⅲ or "
        "III-IV is read as its class, a range as its higher class).",
    )
    source_message_id: Code = Field(min_length=1, max_length=128)

    @field_validator("nyha_class", mode="before")
    @classmethod
    def _nyha_class_as_sites_write_it(cls, value: object) -> object:
        return normalised_nyha_field(value)

    @model_validator(mode="after")
    def _seriousness_is_consistent(self) -> AdverseEventReported:
        if self.seriousness_criteria and not self.serious:
            raise ValueError("seriousness_criteria are given, so the event is serious")
        if self.end is not None and self.end < self.onset:
            raise ValueError("end is before onset")
        return self

    @property
    def clinical_time(self) -> datetime | None:
        return self.onset


class MedicationRecorded(SubjectEvent):
    """A concomitant medication or a study-drug administration (dose as given)."""

    event_type: ClassVar[str] = "org.vigil.medication.recorded.v1"

    category: Literal["concomitant", "study-drug"]
    medication_id: Code = Field(min_length=1, max_length=128, description="The site's id.")
    drug: str = Field(min_length=1, max_length=200)
    drug_code: Code | None = Field(default=None, max_length=64, description="ATC or RxNorm.")
    dose: ClinicalDecimal = Field(gt=0)
    dose_unit: Code = Field(min_length=1, max_length=32, description="UCUM, e.g. mg, mg/kg, [iU].")
    route: str = Field(min_length=1, max_length=64, description="e.g. oral, intravenous.")
    frequency: str | None = Field(default=None, max_length=64, description="e.g. QD, BID, Q4W.")
    start: ClinicalDateTime
    stop: ClinicalDateTime | None = None
    indication: str | None = Field(default=None, max_length=500)
    source_message_id: Code = Field(min_length=1, max_length=128)

    @model_validator(mode="after")
    def _stop_after_start(self) -> MedicationRecorded:
        if self.stop is not None and self.stop < self.start:
            raise ValueError("stop is before start")
        return self

    @property
    def clinical_time(self) -> datetime | None:
        return self.start


class LabResultSuperseded(SubjectEvent):
    """One report of an observation replaces another: a correction, a cancellation or
    entry in error (retracted), or a final after a preliminary result (updated). Result
    status, not arrival, decides: a preliminary or final that arrives after the correction
    it came before is itself the superseded one (``late``), and never replaces it."""

    event_type: ClassVar[str] = "org.vigil.lab_result.superseded.v1"

    observation_key: str
    superseded_event_id: uuid.UUID
    superseding_event_id: uuid.UUID
    reason: Literal["corrected", "retracted", "updated", "late"]


DataQualityProblem = Literal[
    "unit-not-convertible",
    "unknown-subject",
    "reference-range-missing",
    "missing-input",
    "dose-not-convertible",
    "result-unreadable",
    "abnormal-result-unreadable",
    # a censored result ('>7.0') that may or may not meet a rule: the exact value is needed
    "censored-result",
    # two reports of one observation that neither replaces (two different finals; a
    # report after the observation was cancelled): a person decides which is right
    "conflicting-results",
    # a value that cannot be physiological (negative, zero where impossible, beyond the
    # analyte's plausible range): kept, never judged; the data manager checks it
    "implausible-value",
    # a time that cannot be right against the subject's others (collected before birth or
    # in the future, Day 0 before birth): the part that cannot be placed is set aside
    "implausible-time",
    # a laboratory's reference range that cannot be right (low above high): not used
    "reference-range-implausible",
    # a medication whose route (or drug, frequency) Vigil cannot read, so no rule could
    # tell whether it counts
    "route-not-recognised",
    "medication-not-recognised",
]


class DataQualityIssueRaised(SubjectEvent):
    """Something in the data needs a data manager: kept, never dropped, and said here."""

    event_type: ClassVar[str] = "org.vigil.data_quality.issue_raised.v1"

    issue: DataQualityProblem
    detail: str
    related_event_id: uuid.UUID
    rule_id: str | None = Field(default=None, description="The rule that could not judge.")


Severity = Literal["protocol-threshold", "finding"]


class SignalEvent(SubjectEvent):
    """An event in the life of one safety signal (an episode of one rule for one subject).

    Signal events live in the subject's stream, next to the facts that caused them."""

    signal_id: uuid.UUID
    rule_id: str
    rule_pack_version: str
    site_id: SiteId | None = Field(default=None, description="None when the subject is unknown.")


class SafetySignalRaised(SignalEvent):
    """A rule of the study's pack fired: an episode opens. Carries everything needed to
    explain it later, and to route, grade and time the response to it."""

    event_type: ClassVar[str] = "org.vigil.safety_signal.raised.v1"

    rule_title: str
    input_event_ids: tuple[uuid.UUID, ...]
    computed_values: dict[str, Any]
    analyte: str = Field(description="What was judged: an analyte, an AE term, a drug.")
    observed_value: DerivedDecimal | None = None
    observed_unit: str | None = None
    observed_comparator: Comparator | None = Field(
        default=None, description="The comparator the laboratory sent with the value ('<')."
    )
    threshold: str = Field(description="The condition in words, e.g. '<= 9 g/dL'.")
    collected_at: ClinicalDateTime = Field(
        description="When the finding happened in the clinic: specimen collection, AE onset, "
        "medication start."
    )
    severity: Severity = "protocol-threshold"
    grade: int | None = Field(default=None, ge=1, le=5, description="CTCAE grade, when graded.")
    grading: str | None = Field(default=None, description="e.g. 'CTCAE v5.0 Anemia'.")
    serious: bool = Field(default=False, description="A serious adverse event (ICH E2A).")
    required_action: str | None = None
    reporting_deadline: ClinicalDateTime | None = Field(
        default=None, description="When the required report is due (e.g. an SAE: 24 h)."
    )
    recipient_roles: tuple[str, ...] = ()
    rule_source: str | None = Field(default=None, description="Protocol section or guideline.")
    episode_key: str | None = Field(
        default=None, description="What the episode is about beyond subject and rule (an AE id)."
    )
    subject_enrolled: bool = Field(
        default=True, description="False: judged before the subject's enrolment was known."
    )

    @property
    def clinical_time(self) -> datetime | None:
        return self.collected_at


class SafetySignalEscalated(SignalEvent):
    """The abnormality behind an open (or already resolved) episode got worse."""

    event_type: ClassVar[str] = "org.vigil.safety_signal.escalated.v1"

    previous_grade: Grade | None
    grade: Grade | None
    input_event_ids: tuple[uuid.UUID, ...]
    computed_values: dict[str, Any]
    observed_value: DerivedDecimal | None = None
    observed_unit: str | None = None
    observed_comparator: Comparator | None = Field(
        default=None, description="The comparator the laboratory sent with the value ('<')."
    )
    collected_at: ClinicalDateTime
    reporting_deadline: ClinicalDateTime | None = None


class SafetySignalResolved(SignalEvent):
    """The condition stopped holding, judged by clinical time (e.g. a value back in range)."""

    event_type: ClassVar[str] = "org.vigil.safety_signal.resolved.v1"

    reason: str = Field(description="In words, e.g. 'haemoglobin 10.2 g/dL: back in range'.")
    input_event_ids: tuple[uuid.UUID, ...]
    collected_at: ClinicalDateTime


class SafetySignalReopened(SignalEvent):
    """What resolved the episode was corrected or withdrawn: it is open again."""

    event_type: ClassVar[str] = "org.vigil.safety_signal.reopened.v1"

    reason: str
    superseded_event_ids: tuple[uuid.UUID, ...] = ()


class SafetySignalAmended(SignalEvent):
    """A source of the signal was corrected: the signal stands, with new values."""

    event_type: ClassVar[str] = "org.vigil.safety_signal.amended.v1"

    reason: str
    previous_grade: Grade | None
    grade: Grade | None
    input_event_ids: tuple[uuid.UUID, ...]
    superseded_event_ids: tuple[uuid.UUID, ...]
    computed_values: dict[str, Any]
    observed_value: DerivedDecimal | None = None
    observed_unit: str | None = None
    observed_comparator: Comparator | None = Field(
        default=None, description="The comparator the laboratory sent with the value ('<')."
    )
    collected_at: ClinicalDateTime


class SafetySignalRetracted(SignalEvent):
    """The signal should never have been raised: its sources were corrected or withdrawn,
    or it merged into another episode. The record of it stays."""

    event_type: ClassVar[str] = "org.vigil.safety_signal.retracted.v1"

    reason: str
    superseded_event_ids: tuple[uuid.UUID, ...] = ()
    merged_into: uuid.UUID | None = None


class SafetySignalRouted(SignalEvent):
    """The subject of an open signal became known at a site (or moved to another): the
    signal now belongs to that site too, whose investigators are told. Raised once per
    open signal whose recorded site is not the subject's, when the enrolment arrives."""

    event_type: ClassVar[str] = "org.vigil.safety_signal.routed.v1"

    site_id: SiteId = Field(description="The site the signal is routed to now.")
    previous_site_id: SiteId | None = Field(
        default=None, description="The site it had (None: raised before the subject was known)."
    )
    enrolment_event_id: uuid.UUID = Field(description="The enrolment that made the site known.")


REJECTED_INPUT_STREAM = "rejected-input"


class RejectedInputEvent(EventPayload):
    """What every version of InputRejected says: why, where it was found, by whom."""

    study_id: str | None = Field(default=None, description="When the input names one.")
    reason: str = Field(min_length=1)
    origin: str = Field(description="Where it was found, e.g. topic/partition@offset.")
    rejected_by: str

    @property
    def study(self) -> str | None:
        return self.study_id

    @property
    def stream_id(self) -> str:
        return REJECTED_INPUT_STREAM


class InputRejectedV1(RejectedInputEvent):
    """Version 1, kept to read the events recorded before version 2: it carried the raw
    message itself, which now stays in the access-controlled receipt store only."""

    event_type: ClassVar[str] = "org.vigil.input.rejected.v1"

    raw_base64: str = Field(description="The raw bytes, base64: the original, whatever it was.")
    raw_text: str | None = Field(default=None, description="The raw bytes when valid UTF-8.")


class InputRejected(RejectedInputEvent):
    """Something reached Vigil that could not be accepted: why (fields and problems, never
    values), where it was found, and the receipt that holds it. The raw message (which may
    carry names, birth dates, record numbers) stays only in the access-controlled receipt
    store, ``received_messages``; this event refers to it by receipt id, SHA-256 and size."""

    event_type: ClassVar[str] = "org.vigil.input.rejected.v2"

    receipt_id: uuid.UUID = Field(description="The row of received_messages with the raw.")
    raw_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the raw, hex.")
    raw_size: int = Field(ge=0, le=MAX_INT64, description="Size of the raw message in bytes.")
    channel: str = Field(min_length=1, description="http-json, fhir, mllp or kafka.")


_PAYLOADS: dict[str, type[EventPayload]] = {
    cls.event_type: cls
    for cls in (
        SubjectEnrolled,
        LabResultReported,
        SafetySignalRaised,
        SafetySignalEscalated,
        SafetySignalResolved,
        SafetySignalReopened,
        SafetySignalAmended,
        SafetySignalRetracted,
        SafetySignalRouted,
        InputRejectedV1,
        InputRejected,
        DataQualityIssueRaised,
        AdverseEventReported,
        MedicationRecorded,
        LabResultSuperseded,
        LabResultUnreadable,
    )
}


@functools.cache
def schema_version(event_type: str) -> int:
    """The version number a type name ends with (``...v2`` is 2)."""
    version = event_type.rsplit(".", 1)[-1]
    if not (version.startswith("v") and version[1:].isdigit()):
        raise ValueError(f"event type {event_type!r} does not end with a version such as .v1")
    return int(version[1:])


def payload_class(event_type: str) -> type[EventPayload]:
    """The payload model for an event type; unknown types are an error naming the known ones."""
    try:
        return _PAYLOADS[event_type]
    except KeyError:
        known = ", ".join(sorted(_PAYLOADS))
        raise ValueError(f"unknown event type {event_type!r}; known types: {known}") from None


def register_payload(cls: type[EventPayload]) -> type[EventPayload]:
    """Make a payload class known to :func:`payload_class` (for modules that define their
    own events, such as the notifier's); a class decorator. A type name is registered once."""
    existing = _PAYLOADS.get(cls.event_type)
    if existing is not None and existing is not cls:
        raise ValueError(f"event type {cls.event_type!r} is already registered")
    _PAYLOADS[cls.event_type] = cls
    return cls
