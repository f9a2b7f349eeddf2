"""Ingest's study files (sources.yaml, code-map.yaml): the adapter reads the YAML, the domain
validates plain data; either way an error names the file (and the field)."""

from __future__ import annotations

import re
from datetime import UTC
from pathlib import Path

import pytest

from services.ingest.adapters.study_files import (
    load_code_map,
    load_sources,
    load_subject_identifiers,
)
from services.ingest.domain.code_map import InvalidCodeMap, code_map_lookup, code_maps_of
from services.ingest.domain.sources import InvalidSources, source_registry
from services.ingest.domain.study_documents import StudyDocument
from services.ingest.domain.subject_identifiers import (
    InvalidSubjectIdentifier,
    subject_identifiers_of,
)

STUDY = "NCT05262686"
SOURCES = Path("studies") / STUDY / "sources.yaml"
CODE_MAP = Path("studies") / STUDY / "code-map.yaml"


def test_the_domain_validates_sources_given_as_data_and_names_the_file_and_field() -> None:
    document = StudyDocument(SOURCES, {"study_id": STUDY, "sources": [{"id": "Lab A"}]})

    with pytest.raises(InvalidSources, match=re.escape(f"{SOURCES}: invalid sources: ")) as raised:
        source_registry([document], study_folders=[], default_study=STUDY, default_zone=UTC)

    assert "sources.0.id" in str(raised.value)


def test_the_domain_builds_the_registry_from_data_and_folder_names() -> None:
    document = StudyDocument(
        SOURCES,
        {"study_id": STUDY, "sources": [{"id": "lab-a", "hl7": [{"sending_facility": "L"}]}]},
    )

    registry = source_registry(
        [document], study_folders=["EMPTY"], default_study="OTHER", default_zone=UTC
    )

    assert registry.route("ANY", "L")[0] == STUDY
    assert registry.studies == {STUDY, "EMPTY", "OTHER"}


def test_the_domain_reads_subject_identifier_blocks_from_data() -> None:
    block = {"hl7_assigning_authority": "AUTH", "fhir_system": "urn:example:ids"}
    document = StudyDocument(SOURCES, {"study_id": STUDY, "subject_identifier": block})

    identifiers = subject_identifiers_of([document])

    assert identifiers.for_study(STUDY).hl7_assigning_authority == "AUTH"
    with pytest.raises(InvalidSubjectIdentifier, match=re.escape(str(SOURCES))):
        subject_identifiers_of([StudyDocument(SOURCES, {"study_id": ""})])


def test_the_domain_validates_a_code_map_given_as_data() -> None:
    codes = {"study_id": STUDY, "codes": [{"code": "HGB", "loinc": "718-7"}]}

    assert code_maps_of([StudyDocument(CODE_MAP, codes)]) == {
        STUDY: {"|HGB": "718-7", "HGB": "718-7"}
    }
    with pytest.raises(InvalidCodeMap, match=re.escape(f"{CODE_MAP}: invalid code map")):
        code_map_lookup(StudyDocument(CODE_MAP, {"study_id": STUDY, "codes": [{"code": "X"}]}))


def unparseable(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / STUDY
    folder.mkdir()
    (folder / name).write_text("study_id: [unclosed\n")
    return folder / name


def test_an_unparseable_sources_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = unparseable(tmp_path, "sources.yaml")

    with pytest.raises(InvalidSources, match=re.escape(f"{path}: cannot read sources")):
        load_sources(tmp_path, default_study=STUDY, default_zone=UTC)
    with pytest.raises(InvalidSubjectIdentifier, match=re.escape(f"{path}: invalid subject_id")):
        load_subject_identifiers(tmp_path)


def test_an_unparseable_code_map_is_refused_naming_it(tmp_path: Path) -> None:
    path = unparseable(tmp_path, "code-map.yaml")

    with pytest.raises(InvalidCodeMap, match=re.escape(f"{path}: invalid code map")):
        load_code_map(tmp_path, STUDY)
