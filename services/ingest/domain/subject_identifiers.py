"""Where a subject id may come from: the study's own identifier system, never a hospital's.

A hospital sends its patients with several identifiers (its medical record number, an
insurance number, the study's subject id). Only the study's pseudonymous subject id may
become Vigil's ``subject_id``: it is what every event, alert and e-mail carries. Each
study says how its subject ids are marked, in the ``subject_identifier`` block of its
``sources.yaml``:

    subject_identifier:
      hl7_assigning_authority: NCT05262686     # PID-3 CX-4 (its first component, HD-1)
      fhir_system: urn:vigil:study:NCT05262686  # Identifier.system

A study without the block uses its study id as the assigning authority and
``urn:vigil:study:<study id>`` as the system.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.ingest.domain.study_documents import StudyDocument

FHIR_SYSTEM_PREFIX = "urn:vigil:study:"


class InvalidSubjectIdentifier(ValueError):
    """A study's subject_identifier block failed validation; the message names the file."""


class SubjectIdentifierSystem(BaseModel):
    """How one study marks its subject ids in HL7 v2 and in FHIR."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hl7_assigning_authority: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[^|^~\\&\s]+$",  # one HD-1 value: no HL7 delimiter, no space
        description="PID-3 CX-4 (HD-1) of the study's subject ids, e.g. NCT05262686.",
    )
    fhir_system: str = Field(
        min_length=1,
        max_length=255,
        pattern=r"^(?:urn:|https?://)\S+$",
        description="Identifier.system of the study's subject ids, a URI.",
    )

    @classmethod
    def conventional(cls, study_id: str) -> SubjectIdentifierSystem:
        """The system of a study that configures none: its id as the HL7 authority."""
        return cls(hl7_assigning_authority=study_id, fhir_system=FHIR_SYSTEM_PREFIX + study_id)


class _StudyBlock(BaseModel):
    """The part of ``sources.yaml`` read here; the rest of the file is the senders'."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    study_id: str = Field(min_length=1)
    subject_identifier: SubjectIdentifierSystem | None = None


@dataclass(frozen=True)
class SubjectIdentifiers:
    """Every study's identifier system, by study id."""

    configured: Mapping[str, SubjectIdentifierSystem] = field(default_factory=dict)

    def for_study(self, study_id: str) -> SubjectIdentifierSystem:
        return self.configured.get(study_id) or SubjectIdentifierSystem.conventional(study_id)

    def study_of_fhir_system(self, system: str) -> str | None:
        """The study whose FHIR identifier system ``system`` is: a configured one, or the
        conventional ``urn:vigil:study:<study id>`` of a study that configures none."""
        for study_id, configured in self.configured.items():
            if configured.fhir_system == system:
                return study_id
        if system.startswith(FHIR_SYSTEM_PREFIX):
            study_id = system.removeprefix(FHIR_SYSTEM_PREFIX)
            if study_id not in self.configured:
                return study_id
        return None


def subject_identifiers_of(documents: Iterable[StudyDocument]) -> SubjectIdentifiers:
    """The ``subject_identifier`` block of every study's ``sources.yaml``; raises
    InvalidSubjectIdentifier naming the file."""
    configured: dict[str, SubjectIdentifierSystem] = {}
    for document in documents:
        try:
            block = _StudyBlock.model_validate(document.content)
        except ValidationError as error:
            raise InvalidSubjectIdentifier(
                f"{document.path}: invalid subject_identifier: {error}"
            ) from error
        if block.subject_identifier is not None:
            configured[block.study_id] = block.subject_identifier
    return SubjectIdentifiers(configured)
