"""What the inbox shows a person: their scope and the filters they chose (pure).

Filters come from a query string a person (or anyone) can type, so each one is bounded
and checked; a bad one is refused naming the field and what is allowed, never echoing
the value. The scope comes from the person's grants only: a filter narrows it, it can
never widen it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from services.notifier.domain.signal_inbox import STATES, InboxState
from services.notifier.domain.workspace_access import Viewer

#: the filter parameters of the inbox and of its updates
FILTER_FIELDS = ("study", "site", "rule", "grade", "state")
#: ids of studies, sites and rules: letters, digits and a few separators
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")
MAX_QUERY_LENGTH = 1000
MAX_POSITION = 2**63 - 1


class FilterRefused(ValueError):
    """A filter value that cannot be used; ``field`` names the parameter."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class InboxFilters:
    """The person's choices (None: any)."""

    study: str | None = None
    site: str | None = None
    rule: str | None = None
    grade: int | None = None
    state: InboxState | None = None

    def query(self, **changes: str | None) -> dict[str, str]:
        """The filters as query parameters (for links), with ``changes`` applied."""
        current = {name: getattr(self, name) for name in FILTER_FIELDS}
        current.update(changes)
        return {name: str(value) for name, value in current.items() if value not in (None, "")}


@dataclass(frozen=True)
class Scope:
    """Which (study, site) pairs a query may return; a site of None: every site of the
    study, the subjects of no known site included."""

    pairs: tuple[tuple[str, str | None], ...]

    @property
    def studies(self) -> list[str]:
        return [study for study, _ in self.pairs]

    @property
    def sites(self) -> list[str | None]:
        return [site for _, site in self.pairs]


def _identifier(field: str, raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    if not _ID.fullmatch(value):
        raise FilterRefused(
            field, "use an id of letters, digits, '.', '_', ':' or '-' (at most 100 characters)"
        )
    return value


def parse_filters(params: Mapping[str, str], viewer: Viewer) -> InboxFilters:
    """The filters of a query string; raises FilterRefused for the first bad one."""
    study = _identifier("study", params.get("study", ""))
    if study is not None and study not in viewer.clinical_studies():
        raise FilterRefused("study", "choose one of the studies listed in the filter")
    site = _identifier("site", params.get("site", ""))
    rule = _identifier("rule", params.get("rule", ""))
    grade: int | None = None
    raw_grade = params.get("grade", "").strip()
    if raw_grade:
        if not raw_grade.isdigit() or not 1 <= int(raw_grade) <= 5:
            raise FilterRefused("grade", "use a whole number from 1 to 5")
        grade = int(raw_grade)
    state: InboxState | None = None
    raw_state = params.get("state", "").strip()
    if raw_state:
        state = next((s for s in STATES if s == raw_state), None)
        if state is None:
            raise FilterRefused("state", f"use one of: {', '.join(STATES)}")
    return InboxFilters(study=study, site=site, rule=rule, grade=grade, state=state)


def parse_since(raw: str | None) -> int:
    """The position the updates are asked from (0 when not given)."""
    if raw is None or not raw.strip():
        return 0
    value = raw.strip()
    if not value.isdigit() or len(value) > 19 or int(value) > MAX_POSITION:
        raise FilterRefused("since", "use the position the page was given (a whole number)")
    return int(value)


def scope_of(viewer: Viewer, filters: InboxFilters) -> Scope:
    """The (study, site) pairs the person may see, narrowed by the study and site filters."""
    pairs: list[tuple[str, str | None]] = []
    for study in viewer.clinical_studies():
        if filters.study is not None and study != filters.study:
            continue
        sites = viewer.sites(study)
        if sites is None:
            pairs.append((study, filters.site))
        else:
            pairs += [
                (study, site)
                for site in sorted(sites)
                if filters.site is None or site == filters.site
            ]
    return Scope(tuple(pairs))
