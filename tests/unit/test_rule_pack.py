from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from services.safety_rules.adapters.rule_pack_files import load_rule_pack, load_rule_packs
from services.safety_rules.domain.rule_pack import InvalidRulePack
from shared.analytes import codes_of
from shared.yaml_files import load_yaml
from tests.support.services import REPO

PACK = REPO / "studies" / "NCT05262686" / "rules.yaml"


def write_pack(tmp_path: Path, **rule_changes: object) -> Path:
    raw = load_yaml(PACK.read_text())
    raw["rules"][0].update(rule_changes)
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_study_pack_is_valid() -> None:
    packs = load_rule_packs(REPO / "studies")
    pack = packs["NCT05262686"]
    rule = next(r for r in pack.rules if r.id == "anaemia-hb-le-9")
    assert rule.loinc_codes == codes_of("haemoglobin")  # every haemoglobin code, 59260-0 too
    assert "59260-0" in rule.loinc_codes
    assert rule.describe() == "<= 9 g/dL"
    assert "registry" in rule.source


def test_error_names_the_rule_and_the_field(tmp_path: Path) -> None:
    path = write_pack(tmp_path, operator="=<")
    with pytest.raises(InvalidRulePack) as raised:
        load_rule_pack(path)
    message = str(raised.value)
    assert "rule 'anaemia-hb-le-9'" in message
    assert "field 'operator'" in message
    assert str(path) in message


def test_unit_the_analyte_cannot_take_is_refused(tmp_path: Path) -> None:
    path = write_pack(tmp_path, unit="mg/dL")
    with pytest.raises(InvalidRulePack, match="cannot convert"):
        load_rule_pack(path)


def test_unknown_field_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidRulePack, match="treshold"):
        load_rule_pack(write_pack(tmp_path, treshold=9))


def test_duplicate_rule_ids_are_refused(tmp_path: Path) -> None:
    raw = load_yaml(PACK.read_text())
    raw["rules"].append(dict(raw["rules"][0]))
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(InvalidRulePack, match="more than once"):
        load_rule_pack(path)


def test_pack_in_the_wrong_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "OTHER-STUDY"
    folder.mkdir()
    (folder / "rules.yaml").write_text(PACK.read_text())
    with pytest.raises(InvalidRulePack, match="does not match its folder"):
        load_rule_packs(tmp_path)


def test_the_rules_reading_an_input_are_found_in_pack_order() -> None:
    pack = load_rule_pack(PACK)
    for inputs in ({"1742-6"}, {"1975-2", "2160-0"}, {"adverse-event"}, {"no-such-code"}):
        expected = [rule for rule in pack.rules if inputs.intersection(rule.inputs())]
        assert pack.rules_reading(inputs) == expected
    assert {rule.id for rule in pack.rules_reading({"1742-6"})} >= {"hys-law"}


def _neutrophil_rule(pack_raw: dict) -> dict:
    return next(r for r in pack_raw["rules"] if r["id"] == "neutropenia-anc-lt-1-5")


def test_a_rule_reads_the_packs_parameter() -> None:
    pack = load_rule_pack(PACK)
    rule = next(r for r in pack.rules if r.id == "neutropenia-anc-lt-1-5")
    assert pack.parameters["neutrophil_floor"].value == Decimal("1.5")
    assert rule.threshold == Decimal("1.5")
    assert "NCT05087589" in pack.parameters["neutrophil_floor"].source


def test_changing_the_parameter_moves_the_threshold(tmp_path: Path) -> None:
    raw = load_yaml(PACK.read_text())
    raw["parameters"]["neutrophil_floor"]["value"] = 1.0
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(raw))
    rule = next(r for r in load_rule_pack(path).rules if r.id == "neutropenia-anc-lt-1-5")
    assert rule.threshold == Decimal("1.0")
    assert rule.describe() == "< 1 10*9/L"


def test_an_unknown_parameter_fails_loading_and_is_named(tmp_path: Path) -> None:
    raw = load_yaml(PACK.read_text())
    _neutrophil_rule(raw)["threshold"] = {"parameter": "neutrophil_flor"}
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(InvalidRulePack) as raised:
        load_rule_pack(path)
    message = str(raised.value)
    assert "'neutrophil_flor'" in message
    assert "'neutropenia-anc-lt-1-5'" in message
    assert "neutrophil_floor" in message  # the parameters the pack does define


def test_a_parameter_in_another_unit_than_the_rule_fails_loading(tmp_path: Path) -> None:
    raw = load_yaml(PACK.read_text())
    raw["parameters"]["neutrophil_floor"]["unit"] = "/uL"
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(InvalidRulePack, match=r"parameter 'neutrophil_floor' in /uL"):
        load_rule_pack(path)


def test_a_parameter_needs_its_source(tmp_path: Path) -> None:
    raw = load_yaml(PACK.read_text())
    del raw["parameters"]["neutrophil_floor"]["source"]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(InvalidRulePack, match=r"parameters\.neutrophil_floor\.source"):
        load_rule_pack(path)
