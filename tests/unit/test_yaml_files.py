"""shared.yaml_files: libyaml's speed, the pure safe loader's result and safety."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shared.yaml_files import load_yaml

REPO = Path(__file__).resolve().parents[2]
FILES = sorted([*(REPO / "studies").rglob("*.yaml"), *(REPO / "tests" / "data").rglob("*.yaml")])


def test_the_c_loader_is_the_one_in_use() -> None:
    """The wheels are built with libyaml; without it every service start pays ~0.3 s."""
    assert yaml.__with_libyaml__


@pytest.mark.parametrize("path", FILES, ids=lambda path: str(path.relative_to(REPO)))
def test_every_shipped_file_reads_as_the_pure_safe_loader_reads_it(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert load_yaml(text) == yaml.safe_load(text)


@pytest.mark.parametrize(
    "text",
    [
        "!!python/object/apply:os.system ['true']",
        "!!python/name:os.system",
        "a: !!python/tuple [1, 2]",
    ],
)
def test_python_tags_are_refused_as_by_the_safe_loader(text: str) -> None:
    with pytest.raises(yaml.constructor.ConstructorError):
        load_yaml(text)


def test_a_malformed_document_is_a_yaml_error_naming_where() -> None:
    with pytest.raises(yaml.YAMLError, match="line 2"):
        load_yaml("rules:\n  - id: [unclosed\n")
