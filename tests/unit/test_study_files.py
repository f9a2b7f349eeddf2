"""Rule packs and rosters: the domain builds them from plain data, the adapters read the
study folder's files and hand their documents over; every error names where the data came
from (the file) and the field."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from services.notifier.adapters.roster_files import load_roster, load_rosters
from services.notifier.domain.roster import InvalidRoster, roster_from_data
from services.safety_rules.adapters.rule_pack_files import load_rule_pack, load_rule_packs
from services.safety_rules.domain.rule_pack import InvalidRulePack, rule_pack_from_data
from shared.yaml_files import load_yaml
from tests.support.services import REPO

STUDY = REPO / "studies" / "NCT05262686"


def test_a_rule_pack_is_built_from_the_document_its_file_holds() -> None:
    raw = load_yaml((STUDY / "rules.yaml").read_text())

    assert rule_pack_from_data(raw, "the study's pack") == load_rule_pack(STUDY / "rules.yaml")


def test_invalid_pack_data_names_its_source_the_rule_and_the_field() -> None:
    raw = load_yaml((STUDY / "rules.yaml").read_text())
    raw["rules"][0]["operator"] = "=<"

    with pytest.raises(InvalidRulePack) as raised:
        rule_pack_from_data(raw, "studies/X/rules.yaml")

    message = str(raised.value)
    assert message.startswith("studies/X/rules.yaml: invalid rule pack\n")
    assert "rule 'anaemia-hb-le-9' (rules[0]) field 'operator'" in message


def test_the_packs_of_a_study_folder_are_keyed_by_study() -> None:
    assert list(load_rule_packs(REPO / "studies")) == ["NCT05262686"]


def test_a_roster_is_built_from_the_document_its_file_holds() -> None:
    raw = load_yaml((STUDY / "roster.yaml").read_text())

    assert roster_from_data(raw, "the study's roster") == load_roster(STUDY / "roster.yaml")


def test_invalid_roster_data_names_its_source_and_the_field() -> None:
    with pytest.raises(InvalidRoster, match=r"^studies/X/roster.yaml: invalid roster: .*medical"):
        roster_from_data({"study_id": "X", "sites": []}, "studies/X/roster.yaml")


@pytest.mark.parametrize("content", [None, "[unclosed\n"], ids=["no such file", "not YAML"])
@pytest.mark.parametrize(
    ("load", "error", "what"),
    [(load_rule_pack, InvalidRulePack, "rule pack"), (load_roster, InvalidRoster, "roster")],
    ids=["rule pack", "roster"],
)
def test_a_file_that_cannot_be_read_is_named(
    tmp_path: Path,
    content: str | None,
    load: Callable[[Path], object],
    error: type[ValueError],
    what: str,
) -> None:
    path = tmp_path / "study.yaml"
    if content is not None:
        path.write_text(content)

    with pytest.raises(error, match=f"^{re.escape(str(path))}: cannot read {what}: "):
        load(path)


def test_the_rosters_of_a_study_folder_are_keyed_by_study() -> None:
    assert list(load_rosters(REPO / "studies")) == ["NCT05262686"]


@pytest.mark.parametrize(
    "module",
    ["services/safety_rules/domain/rule_pack.py", "services/notifier/domain/roster.py"],
)
def test_the_domain_reads_no_files(module: str) -> None:
    tree = ast.parse((REPO / module).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}

    assert not imported & {"yaml", "pathlib", "os", "io"}
