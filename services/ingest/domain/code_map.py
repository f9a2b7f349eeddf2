"""A study's code map: the local codes its laboratories use, and the LOINC codes they mean."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


def load_code_map(study_dir: Path, study_id: str) -> dict[str, str]:
    """The study's code map as a lookup table; empty when the study has none."""
    path = study_dir / study_id / CODE_MAP_FILE
    if not path.exists():
        return {}
    try:
        code_map = CodeMap.model_validate(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError, ValidationError) as error:
        raise InvalidCodeMap(f"{path}: invalid code map: {error}") from error
    return code_map.lookup()


def load_code_maps(study_dir: Path) -> dict[str, dict[str, str]]:
    """Every study's code map, keyed by study id."""
    return {
        path.parent.name: load_code_map(study_dir, path.parent.name)
        for path in sorted(study_dir.glob(f"*/{CODE_MAP_FILE}"))
    }
