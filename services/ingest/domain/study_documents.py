"""A study's configuration file as plain data: where it came from, and what it holds.

The adapters read ``studies/<study>/*.yaml``; the domain validates the documents, and its
errors name the file (and the field) so the fix is obvious.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StudyDocument:
    """One parsed YAML file of a study's folder."""

    path: Path
    """Where it was read from (named by every error about it)."""
    content: object
    """What the file holds, as YAML parsed it (None for an empty file)."""

    @property
    def folder(self) -> str:
        """The name of the study folder the file is in."""
        return self.path.parent.name
