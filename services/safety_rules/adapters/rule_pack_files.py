"""Rule packs as files: each study's ``rules.yaml`` in its folder of the study directory,
read and handed to the domain as plain data."""

from __future__ import annotations

from pathlib import Path

import yaml

from services.safety_rules.domain.rule_pack import InvalidRulePack, RulePack, rule_pack_from_data
from shared.yaml_files import load_yaml

RULE_PACK_FILE = "rules.yaml"


def load_rule_pack(path: Path) -> RulePack:
    """Read and validate a rule pack; errors name the file, the rule and the field."""
    try:
        raw = load_yaml(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise InvalidRulePack(f"{path}: cannot read rule pack: {error}") from error
    return rule_pack_from_data(raw, str(path))


def load_rule_packs(study_dir: Path) -> dict[str, RulePack]:
    """Every study's pack under ``study_dir``, keyed by study id; a pack must sit in the
    folder named after its study."""
    packs: dict[str, RulePack] = {}
    for pack_path in sorted(study_dir.glob(f"*/{RULE_PACK_FILE}")):
        pack = load_rule_pack(pack_path)
        if pack.study_id != pack_path.parent.name:
            raise InvalidRulePack(
                f"{pack_path}: study_id {pack.study_id!r} does not match its folder "
                f"{pack_path.parent.name!r}"
            )
        packs[pack.study_id] = pack
    return packs
