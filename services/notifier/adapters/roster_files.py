"""Rosters as files: each study's ``roster.yaml`` in its folder of the study directory, read
and handed to the domain as plain data."""

from __future__ import annotations

from pathlib import Path

import yaml

from services.notifier.domain.roster import InvalidRoster, Roster, roster_from_data
from shared.yaml_files import load_yaml

ROSTER_FILE = "roster.yaml"


def load_roster(path: Path) -> Roster:
    """Read and validate one roster file; errors name the file and the field."""
    try:
        raw = load_yaml(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise InvalidRoster(f"{path}: cannot read roster: {error}") from error
    return roster_from_data(raw, str(path))


def load_rosters(study_dir: Path) -> dict[str, Roster]:
    """Every study's roster under ``study_dir``, keyed by study id."""
    rosters = {}
    for path in sorted(study_dir.glob(f"*/{ROSTER_FILE}")):
        roster = load_roster(path)
        rosters[roster.study_id] = roster
    return rosters
