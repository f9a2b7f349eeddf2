"""Which study and time zone a sending system belongs to: ``sources.yaml`` per study.

An HL7 v2 message names its sender in MSH-3 (application) and MSH-4 (facility); the
source's entry gives the study its results belong to and the zone of its local times.
A sender not listed falls back to VIGIL_DEFAULT_STUDY and VIGIL_SOURCE_TIMEZONE.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.ingest.subject_identifiers import SubjectIdentifierSystem

SOURCES_FILE = "sources.yaml"


class InvalidSources(ValueError):
    """A sources file failed validation."""


class Hl7Source(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sending_facility: str = Field(min_length=1, description="MSH-4.1")
    sending_application: str | None = Field(default=None, description="MSH-3.1; any if unset")
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value


class StudySources(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    study_id: str
    hl7: tuple[Hl7Source, ...] = ()
    subject_identifier: SubjectIdentifierSystem | None = None  # read by subject_identifiers


@dataclass(frozen=True)
class SourceRouter:
    """Maps a sender to (study, zone)."""

    routes: dict[tuple[str, str | None], tuple[str, tzinfo]]
    default: tuple[str, tzinfo]

    def route(self, application: str, facility: str) -> tuple[str, tzinfo]:
        return (
            self.routes.get((facility, application))
            or self.routes.get((facility, None))
            or self.default
        )


def load_sources(study_dir: Path, *, default_study: str, default_zone: tzinfo) -> SourceRouter:
    """Every study's sources under ``study_dir``."""
    routes: dict[tuple[str, str | None], tuple[str, tzinfo]] = {}
    for path in sorted(study_dir.glob(f"*/{SOURCES_FILE}")):
        try:
            sources = StudySources.model_validate(yaml.safe_load(path.read_text()))
        except (OSError, yaml.YAMLError, ValidationError) as error:
            raise InvalidSources(f"{path}: invalid sources: {error}") from error
        for source in sources.hl7:
            key = (source.sending_facility, source.sending_application)
            if key in routes:
                raise InvalidSources(f"{path}: sender {key} is already assigned to a study")
            routes[key] = (sources.study_id, ZoneInfo(source.timezone))
    return SourceRouter(routes, (default_study, default_zone))
