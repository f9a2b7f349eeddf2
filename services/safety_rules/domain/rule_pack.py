"""Rule packs: a study's safety rules as validated, versioned data (YAML in the study folder).

A rule says what it reads (its inputs), when it fires (its condition kind and parameters),
how bad a finding is (its grading), what must happen and by when, who must hear of it, and
where the rule comes from. The engine (``conditions/``) knows the condition kinds; the pack
chooses the numbers.

The rule models are in ``rule_terms.py``, ``rule_kinds.py`` and ``event_rule_kinds.py``;
this module holds the pack and builds it from plain data (the adapter
``services.safety_rules.adapters.rule_pack_files`` reads it from the study folder).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from functools import cached_property
from typing import Annotated

from pydantic import Field, ValidationError, model_validator

from services.safety_rules.domain.rule_kinds import KINDS, Rule
from services.safety_rules.domain.rule_terms import Strict

ParameterName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]


class Parameter(Strict):
    """A study setting several rules may read (``threshold: {parameter: name}``): its value,
    its unit when it has one, and the evidence for it."""

    value: Decimal
    unit: str | None = None
    source: str = Field(min_length=1)


class InvalidRulePack(ValueError):
    """A rule pack failed validation; the message names the file, rule and field."""


class RulePack(Strict):
    """All rules of one study at one version."""

    study_id: str
    version: str = Field(min_length=1)
    parameters: dict[ParameterName, Parameter] = Field(default_factory=dict)
    rules: tuple[Rule, ...]

    @model_validator(mode="before")
    @classmethod
    def _parameters_are_read(cls, data: object) -> object:
        """A rule field written ``{parameter: name}`` takes the pack parameter's value; a
        name the pack does not define, or a unit other than the rule's, fails loading."""
        if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
            return data
        parameters = data.get("parameters") or {}
        if not isinstance(parameters, dict):
            return data  # the field's own validation says what is wrong
        return {**data, "rules": [_with_parameters(rule, parameters) for rule in data["rules"]]}

    @model_validator(mode="after")
    def _ids_are_unique(self) -> RulePack:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} appears more than once")
            seen.add(rule.id)
        return self

    def rules_reading(self, inputs: Iterable[str]) -> list[Rule]:
        """The rules that read any of ``inputs`` (LOINC codes or input kinds), in pack order."""
        chosen: set[int] = set()
        for item in inputs:
            chosen |= self._readers.get(item, frozenset())
        return [self.rules[index] for index in sorted(chosen)]

    @cached_property
    def _readers(self) -> dict[str, frozenset[int]]:
        readers: dict[str, set[int]] = {}
        for index, rule in enumerate(self.rules):
            for item in rule.inputs():
                readers.setdefault(item, set()).add(index)
        return {item: frozenset(indexes) for item, indexes in readers.items()}


def _with_parameters(rule: object, parameters: dict[str, object]) -> object:
    if not isinstance(rule, dict):
        return rule
    read: dict[str, object] = {}
    for field, value in rule.items():
        if not (isinstance(value, dict) and set(value) == {"parameter"}):
            continue
        name = value["parameter"]
        parameter = parameters.get(name) if isinstance(name, str) else None
        if not isinstance(parameter, dict) or "value" not in parameter:
            known = ", ".join(map(str, parameters)) or "none"
            raise ValueError(
                f"rule {rule.get('id', '?')!r} field {field!r} refers to parameter {name!r}, "
                f"which the pack does not define (parameters: {known})"
            )
        unit = parameter.get("unit")
        if unit is not None and rule.get("unit") is not None and unit != rule.get("unit"):
            raise ValueError(
                f"rule {rule.get('id', '?')!r} field {field!r} reads parameter {name!r} in "
                f"{unit}, but the rule compares in {rule.get('unit')}"
            )
        read[field] = parameter["value"]
    return {**rule, **read} if read else rule


def rule_pack_from_data(raw: object, source: str) -> RulePack:
    """Validate a rule pack given as plain data (a YAML document as read); errors name
    ``source`` (the file it came from), the rule and the field."""
    try:
        return RulePack.model_validate(raw)
    except ValidationError as error:
        raise InvalidRulePack(_describe(source, raw, error)) from error


def _describe(source: str, raw: object, error: ValidationError) -> str:
    lines = [f"{source}: invalid rule pack"]
    rules = raw.get("rules") if isinstance(raw, dict) else None
    for problem in error.errors():
        location = list(problem["loc"])
        where = ".".join(str(part) for part in location) or "(pack)"
        if len(location) >= 2 and location[0] == "rules" and isinstance(location[1], int):
            index = location[1]
            rule_id = "?"
            if isinstance(rules, list) and index < len(rules) and isinstance(rules[index], dict):
                rule_id = str(rules[index].get("id", "?"))
            field = ".".join(str(part) for part in location[2:] if part not in KINDS)
            where = f"rule {rule_id!r} (rules[{index}]) field {field or '(rule)'!r}"
        lines.append(f"  {where}: {problem['msg']}")
    return "\n".join(lines)
