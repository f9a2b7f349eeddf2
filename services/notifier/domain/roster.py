"""A study's roster: sites, people, roles and channels (YAML in the study folder)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationError, model_validator

ROSTER_FILE = "roster.yaml"


class InvalidRoster(ValueError):
    """A roster failed validation; the message names the file and field."""


class Role(StrEnum):
    INVESTIGATOR = "investigator"
    SUB_INVESTIGATOR = "sub_investigator"
    MEDICAL_MONITOR = "medical_monitor"
    SAFETY_DESK = "safety_desk"


SITE_ALERT_ROLES = frozenset({Role.INVESTIGATOR, Role.SUB_INVESTIGATOR})


class Person(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    name: str = Field(min_length=1, description="For the roster only; never put in a message.")
    role: Role
    email: EmailStr


class Site(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    name: str = ""
    people: tuple[Person, ...]


class Roster(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    study_id: str
    study_contacts: tuple[Person, ...] = ()
    sites: tuple[Site, ...]

    @model_validator(mode="after")
    def _has_a_fallback(self) -> Roster:
        if not any(p.role == Role.MEDICAL_MONITOR for p in self.study_contacts):
            raise ValueError(
                "study_contacts needs at least one medical_monitor: alerts for subjects "
                "without a known site go there"
            )
        return self

    def recipients_for(self, site_id: str | None) -> tuple[Person, ...]:
        """The investigators of the site; the study's medical monitors when the site is
        unknown or has no investigator, so that no signal goes to nobody."""
        for site in self.sites:
            if site.id == site_id:
                investigators = tuple(p for p in site.people if p.role in SITE_ALERT_ROLES)
                if investigators:
                    return investigators
        return tuple(p for p in self.study_contacts if p.role == Role.MEDICAL_MONITOR)


def load_roster(path: Path) -> Roster:
    """Read and validate one roster file."""
    try:
        raw = yaml.safe_load(path.read_text())
        return Roster.model_validate(raw)
    except (OSError, yaml.YAMLError) as error:
        raise InvalidRoster(f"{path}: cannot read roster: {error}") from error
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise InvalidRoster(f"{path}: invalid roster: {problems}") from error


def load_rosters(study_dir: Path) -> dict[str, Roster]:
    """Every study's roster under ``study_dir``, keyed by study id."""
    rosters = {}
    for path in sorted(study_dir.glob(f"*/{ROSTER_FILE}")):
        roster = load_roster(path)
        rosters[roster.study_id] = roster
    return rosters
