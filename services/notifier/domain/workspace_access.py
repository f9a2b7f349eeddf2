"""Who sees what in the workspace (pure).

People come from the study rosters: the roster id is the sign-in name. A person's grants
are per study:

- an investigator or sub-investigator sees the subjects and signals of the sites that
  list them, nothing of another site;
- a medical monitor or the safety desk sees the whole study (signals, subjects, eDISH);
- a data manager sees the study's data-quality queue and audit trails, not clinical
  signals.

Anything outside a grant is answered as if it did not exist (404), and logged by the
entrypoint: another site's subject id must not even be confirmed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.notifier.domain.roster import Role, Roster

STUDY_WIDE_ROLES = frozenset({Role.MEDICAL_MONITOR, Role.SAFETY_DESK})
SITE_ROLES = frozenset({Role.INVESTIGATOR, Role.SUB_INVESTIGATOR})


@dataclass(frozen=True)
class Grant:
    """One study's part of a person's access: their role and, for site staff, the sites."""

    study_id: str
    role: Role
    sites: frozenset[str] | None  # None: every site of the study

    @property
    def clinical(self) -> bool:
        """Sees signals, subjects and assessments (not only data quality)."""
        return self.role in STUDY_WIDE_ROLES or self.role in SITE_ROLES

    def covers_site(self, site_id: str | None) -> bool:
        """A subject with no known site (``None``) is the study-level people's."""
        if self.sites is None:
            return True
        return site_id is not None and site_id in self.sites


@dataclass(frozen=True)
class Viewer:
    """A signed-in person and what they may see."""

    person_id: str
    name: str
    grants: tuple[Grant, ...]

    def grant(self, study_id: str) -> Grant | None:
        return next((g for g in self.grants if g.study_id == study_id), None)

    def studies(self) -> tuple[str, ...]:
        return tuple(g.study_id for g in self.grants)

    def clinical_studies(self) -> tuple[str, ...]:
        return tuple(g.study_id for g in self.grants if g.clinical)

    def may_see_clinical(self, study_id: str, site_id: str | None) -> bool:
        """Signals, subject charts and assessments of a subject at ``site_id``."""
        grant = self.grant(study_id)
        return grant is not None and grant.clinical and grant.covers_site(site_id)

    def may_see_data_quality(self, study_id: str, site_id: str | None) -> bool:
        """The data-quality queue: data managers and study-wide roles, and site staff for
        their own sites."""
        grant = self.grant(study_id)
        if grant is None:
            return False
        if grant.role == Role.DATA_MANAGER:
            return True
        return grant.clinical and grant.covers_site(site_id)

    def may_see_audit_trail(self, study_id: str, site_id: str | None) -> bool:
        """A subject's audit trail: who may see the subject, and the data manager."""
        return self.may_see_clinical(study_id, site_id) or self.may_see_data_quality(
            study_id, site_id
        )

    def is_study_wide(self, study_id: str) -> bool:
        grant = self.grant(study_id)
        return grant is not None and grant.role in STUDY_WIDE_ROLES

    def sites(self, study_id: str) -> frozenset[str] | None:
        """The sites this person sees in the study (None: all); empty: none."""
        grant = self.grant(study_id)
        return frozenset() if grant is None else grant.sites


def viewer_for(person_id: str, rosters: Mapping[str, Roster]) -> Viewer | None:
    """The person's grants across the rosters (None: on no roster)."""
    grants: list[Grant] = []
    name = ""
    for study_id, roster in sorted(rosters.items()):
        person = roster.person(person_id)
        if person is None:
            continue
        name = name or person.name
        sites: frozenset[str] | None
        if person.role in SITE_ROLES:
            sites = frozenset(roster.sites_of(person_id))
        elif person.role in STUDY_WIDE_ROLES or person.role == Role.DATA_MANAGER:
            sites = None
        else:
            continue
        grants.append(Grant(study_id, person.role, sites))
    if not grants:
        return None
    return Viewer(person_id, name, tuple(grants))
