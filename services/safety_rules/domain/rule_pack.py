"""Rule packs: a study's safety rules as validated, versioned data (YAML in the study folder)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.analytes import UnitNotConvertible, analyte_for

RULE_PACK_FILE = "rules.yaml"


class InvalidRulePack(ValueError):
    """A rule pack failed validation; the message names the file, rule and field."""


class AbsoluteThresholdRule(BaseModel):
    """Fires when an analyte, in the rule's unit, compares true against a fixed threshold."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str = Field(min_length=1)
    kind: Literal["absolute_threshold"]
    loinc_codes: tuple[str, ...] = Field(min_length=1)
    operator: Literal["<", "<=", ">", ">="]
    threshold: Decimal
    unit: str
    source: str = Field(min_length=1, description="Protocol section or guideline.")

    @model_validator(mode="after")
    def _unit_is_convertible(self) -> AbsoluteThresholdRule:
        for code in self.loinc_codes:
            analyte = analyte_for(code)
            if analyte is None:
                raise ValueError(f"LOINC {code} is not in Vigil's analyte catalogue")
            try:
                analyte.to_canonical(Decimal(1), self.unit)
            except UnitNotConvertible as error:
                raise ValueError(str(error)) from None
        return self

    def holds(self, value: Decimal, comparator: str | None = None) -> bool:
        """Whether ``value`` (in the rule's unit) meets the condition.

        A censored value (``<0.5``, ``>200``) is only known to lie on one side of ``value``;
        it meets the condition when the condition may hold, so that a result that cannot be
        told apart from an alarming one alerts.
        """
        t = self.threshold
        if comparator in (None, "="):
            comparisons = {"<": value < t, "<=": value <= t, ">": value > t, ">=": value >= t}
            return comparisons[self.operator]
        lies_below = comparator in ("<", "<=")
        if self.operator in ("<", "<="):
            if lies_below:
                return True
            return value < t or (comparator == ">=" and self.operator == "<=" and value == t)
        if not lies_below:
            return True
        return value > t or (comparator == "<=" and self.operator == ">=" and value == t)

    def describe(self) -> str:
        return f"{self.operator} {self.threshold.normalize():f} {self.unit}"


Rule = Annotated[AbsoluteThresholdRule, Field(discriminator="kind")]


class RulePack(BaseModel):
    """All rules of one study at one version."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    study_id: str
    version: str = Field(min_length=1)
    rules: tuple[Rule, ...]

    @model_validator(mode="after")
    def _ids_are_unique(self) -> RulePack:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} appears more than once")
            seen.add(rule.id)
        return self


def load_rule_pack(path: Path) -> RulePack:
    """Read and validate a rule pack; errors name the file, the rule and the field."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise InvalidRulePack(f"{path}: cannot read rule pack: {error}") from error
    try:
        return RulePack.model_validate(raw)
    except ValidationError as error:
        raise InvalidRulePack(_describe(path, raw, error)) from error


def _describe(path: Path, raw: object, error: ValidationError) -> str:
    lines = [f"{path}: invalid rule pack"]
    rules = raw.get("rules") if isinstance(raw, dict) else None
    for problem in error.errors():
        location = list(problem["loc"])
        where = ".".join(str(part) for part in location)
        if len(location) >= 2 and location[0] == "rules" and isinstance(location[1], int):
            index = location[1]
            rule_id = "?"
            if isinstance(rules, list) and index < len(rules) and isinstance(rules[index], dict):
                rule_id = str(rules[index].get("id", "?"))
            field = ".".join(str(part) for part in location[2:] if part != "absolute_threshold")
            where = f"rule {rule_id!r} (rules[{index}]) field {field or '(rule)'!r}"
        lines.append(f"  {where}: {problem['msg']}")
    return "\n".join(lines)


def load_rule_packs(study_dir: Path) -> dict[str, RulePack]:
    """Every study's pack under ``study_dir``, keyed by study id."""
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
