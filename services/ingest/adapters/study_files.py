"""Reading a study folder's YAML files (``studies/<study>/sources.yaml``,
``code-map.yaml``) as plain data for the domain, which validates them.

A file that cannot be read or parsed is refused here with the error the domain raises
for one that does not validate, naming the file. ``load_*`` read and validate in one
call, for tools and tests; the composition root reads and hands the data over itself.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import tzinfo
from pathlib import Path

import yaml

from services.ingest.domain.code_map import CODE_MAP_FILE, InvalidCodeMap, code_map_lookup
from services.ingest.domain.sources import (
    SOURCES_FILE,
    InvalidSources,
    SourceRegistry,
    source_registry,
)
from services.ingest.domain.study_documents import StudyDocument
from services.ingest.domain.subject_identifiers import (
    InvalidSubjectIdentifier,
    SubjectIdentifiers,
    subject_identifiers_of,
)
from shared.yaml_files import load_yaml

Refusal = Callable[[Path, Exception], Exception]


def _read(path: Path, refused: Refusal) -> StudyDocument:
    try:
        return StudyDocument(path, load_yaml(path.read_text()))
    except (OSError, yaml.YAMLError) as error:
        raise refused(path, error) from error


def _unreadable_sources(path: Path, error: Exception) -> Exception:
    return InvalidSources(f"{path}: cannot read sources: {error}")


def _unreadable_identifiers(path: Path, error: Exception) -> Exception:
    return InvalidSubjectIdentifier(f"{path}: invalid subject_identifier: {error}")


def _unreadable_code_map(path: Path, error: Exception) -> Exception:
    return InvalidCodeMap(f"{path}: invalid code map: {error}")


def read_sources_files(
    study_dir: Path, refused: Refusal = _unreadable_sources
) -> list[StudyDocument]:
    """Every study's ``sources.yaml``, in the order of their folders' names; raises
    InvalidSources (or what ``refused`` makes) naming a file that cannot be read."""
    return [_read(path, refused) for path in sorted(study_dir.glob(f"*/{SOURCES_FILE}"))]


def read_code_map_files(study_dir: Path) -> list[StudyDocument]:
    """Every study's ``code-map.yaml``; raises InvalidCodeMap naming a file that cannot be
    read."""
    return [
        _read(path, _unreadable_code_map) for path in sorted(study_dir.glob(f"*/{CODE_MAP_FILE}"))
    ]


def study_folders(study_dir: Path) -> list[str]:
    """The name of every study folder (a study may have no files yet)."""
    return [p.name for p in study_dir.iterdir() if p.is_dir()] if study_dir.is_dir() else []


def load_sources(study_dir: Path, *, default_study: str, default_zone: tzinfo) -> SourceRegistry:
    """Every study's sources under ``study_dir``; raises InvalidSources naming the file and
    the field."""
    return source_registry(
        read_sources_files(study_dir),
        study_folders=study_folders(study_dir),
        default_study=default_study,
        default_zone=default_zone,
    )


def load_subject_identifiers(study_dir: Path) -> SubjectIdentifiers:
    """The ``subject_identifier`` block of every study's ``sources.yaml``; raises
    InvalidSubjectIdentifier naming the file."""
    return subject_identifiers_of(read_sources_files(study_dir, _unreadable_identifiers))


def load_code_map(study_dir: Path, study_id: str) -> dict[str, str]:
    """The study's code map as a lookup table; empty when the study has none."""
    path = study_dir / study_id / CODE_MAP_FILE
    if not path.exists():
        return {}
    return code_map_lookup(_read(path, _unreadable_code_map))
