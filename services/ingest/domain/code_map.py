"""A study's code map: the local codes its laboratories use, and the LOINC codes they mean."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.ingest.domain.study_documents import StudyDocument

CODE_MAP_FILE = "code-map.yaml"


class InvalidCodeMap(ValueError):
    """A code map failed validation; the message names the file and entry."""


class LocalCode(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    system: str = Field(default="", description="Coding system as sent in OBX-3.3 (may be empty).")
    code: str = Field(min_length=1)
    loinc: str = Field(pattern=r"^\d{1,7}-\d$")
    text: str = ""


class CodeMap(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    study_id: str
    codes: tuple[LocalCode, ...] = ()

    def lookup(self) -> dict[str, str]:
        """Keys ``system|code``, and ``code`` alone for entries without a system."""
        table: dict[str, str] = {}
        for entry in self.codes:
            table[f"{entry.system}|{entry.code}"] = entry.loinc
            if not entry.system:
                table[entry.code] = entry.loinc
        return table


def code_map_lookup(document: StudyDocument) -> dict[str, str]:
    """A study's ``code-map.yaml`` as a lookup table; raises InvalidCodeMap naming the
    file."""
    try:
        code_map = CodeMap.model_validate(document.content)
    except ValidationError as error:
        raise InvalidCodeMap(f"{document.path}: invalid code map: {error}") from error
    return code_map.lookup()


def code_maps_of(documents: Iterable[StudyDocument]) -> dict[str, dict[str, str]]:
    """Every study's code map as a lookup table, keyed by study id (its folder)."""
    return {document.folder: code_map_lookup(document) for document in documents}
