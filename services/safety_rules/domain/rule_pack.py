"""Rule packs: a study's safety rules as validated, versioned data (YAML in the study folder).

A rule says what it reads (its inputs), when it fires (its condition kind and parameters),
how bad a finding is (its grading), what must happen and by when, who must hear of it, and
where the rule comes from. The engine (``engine.py``) knows the condition kinds; the pack
chooses the numbers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.analytes import UnitNotConvertible, analyte_for

RULE_PACK_FILE = "rules.yaml"
Operator = Literal["<", "<=", ">", ">="]
Basis = Literal["value", "uln", "lln", "baseline"]
Role = Annotated[str, Field(pattern=r"^[a-z][a-z-]*$")]
RuleId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
LoincCode = Annotated[str, Field(pattern=r"^\d{1,7}-\d$")]


class InvalidRulePack(ValueError):
    """A rule pack failed validation; the message names the file, rule and field."""


def compare(value: Decimal, operator: Operator, bound: Decimal) -> bool:
    """``value operator bound`` for an exact value."""
    if operator == "<":
        return value < bound
    if operator == "<=":
        return value <= bound
    if operator == ">":
        return value > bound
    return value >= bound


def may_hold(value: Decimal, comparator: str | None, operator: Operator, bound: Decimal) -> bool:
    """Whether a possibly censored value meets ``operator bound``.

    A censored value (``<0.5``, ``>200``) is only known to lie on one side of ``value``; it
    meets the condition when the condition may hold, so that a result that cannot be told
    apart from an alarming one alerts.
    """
    if comparator in (None, "="):
        return compare(value, operator, bound)
    lies_below = comparator in ("<", "<=")
    if operator in ("<", "<="):
        if lies_below:
            return True
        return value < bound or (comparator == ">=" and operator == "<=" and value == bound)
    if not lies_below:
        return True
    return value > bound or (comparator == "<=" and operator == ">=" and value == bound)


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Band(_Strict):
    """One grade: the finding has this grade when ``quantity operator bound`` holds."""

    grade: int = Field(ge=1, le=5)
    operator: Operator
    bound: Decimal
    basis: Basis | None = Field(
        default=None, description="What ``bound`` is compared with; the grading's by default."
    )


class Grading(_Strict):
    """How a finding is graded (CTCAE v5.0 for labs); bands are tried worst first."""

    scale: str = "CTCAE v5.0"
    term: str
    basis: Basis = "value"
    bands: tuple[Band, ...] = Field(min_length=1)
    abnormal_baseline_bands: tuple[Band, ...] = Field(
        default=(),
        description="Used instead when the subject's baseline is above the ULN "
        "(CTCAE grades ALT, AST and bilirubin as multiples of baseline then).",
    )

    @property
    def label(self) -> str:
        return f"{self.scale} {self.term}"


class FallbackLimit(_Strict):
    """A reference limit to use when the laboratory sent none (flagged as a data problem)."""

    value: Decimal = Field(gt=0)
    unit: str
    source: str = Field(min_length=1)


class RuleBase(_Strict):
    """What every rule says besides its condition."""

    id: RuleId
    title: str = Field(min_length=1)
    source: str = Field(min_length=1, description="Protocol section or guideline.")
    severity: Literal["protocol-threshold", "finding"] = "protocol-threshold"
    grading: Grading | None = None
    required_action: str = Field(default="Review, assess clinical significance, acknowledge.")
    reporting_deadline_hours: int | None = Field(
        default=None, gt=0, description="Hours from when Vigil learned of it to the report."
    )
    recipients: tuple[Role, ...] = Field(
        default=("investigator",),
        description="Roles told at once; the roster's escalation chain reaches the medical "
        "monitor when nobody acknowledges in time.",
    )
    note: str | None = Field(default=None, description="What a reviewer must know.")

    #: whether the rule needs the subject's enrolment (age, sex, weight, Day 0)
    needs_enrolment: bool = False

    def inputs(self) -> tuple[str, ...]:
        """LOINC codes (or other input kinds) the rule reads, for ``vigil rules check``."""
        raise NotImplementedError

    def describe(self) -> str:
        """The condition in words."""
        raise NotImplementedError


def _check_units(codes: tuple[str, ...], unit: str) -> None:
    for code in codes:
        analyte = analyte_for(code)
        if analyte is None:
            raise ValueError(f"LOINC {code} is not in Vigil's analyte catalogue")
        try:
            analyte.to_canonical(Decimal(1), unit)
        except UnitNotConvertible as error:
            raise ValueError(str(error)) from None


def _number(value: Decimal) -> str:
    return f"{value.normalize():f}"


class FromPercent(_Strict):
    """An absolute count derived from a differential percentage and the total count of the
    same specimen (e.g. neutrophils % of leukocytes x WBC)."""

    percent_code: LoincCode
    total_code: LoincCode


class AbsoluteThresholdRule(RuleBase):
    """Fires when an analyte, in the rule's unit, compares true against a fixed threshold."""

    kind: Literal["absolute_threshold"]
    loinc_codes: tuple[LoincCode, ...] = Field(min_length=1)
    operator: Operator
    threshold: Decimal
    unit: str
    derive_from_percent: tuple[FromPercent, ...] = Field(
        default=(),
        description="Also judge counts derived from a percentage and the specimen's total.",
    )

    @model_validator(mode="after")
    def _unit_is_convertible(self) -> AbsoluteThresholdRule:
        _check_units(self.loinc_codes, self.unit)
        _check_units(tuple(d.total_code for d in self.derive_from_percent), self.unit)
        return self

    def holds(self, value: Decimal, comparator: str | None = None) -> bool:
        """Whether ``value`` (in the rule's unit) meets the condition (censored: may meet)."""
        return may_hold(value, comparator, self.operator, self.threshold)

    def inputs(self) -> tuple[str, ...]:
        derived = [
            code for d in self.derive_from_percent for code in (d.percent_code, d.total_code)
        ]
        return (*self.loinc_codes, *derived)

    def describe(self) -> str:
        return f"{self.operator} {_number(self.threshold)} {self.unit}"


class ReferenceLimitRule(RuleBase):
    """Fires when a result compares against a multiple of its own laboratory's ULN or LLN."""

    kind: Literal["reference_limit_multiple"]
    loinc_codes: tuple[LoincCode, ...] = Field(min_length=1)
    limit: Literal["ULN", "LLN"]
    operator: Operator
    multiple: Decimal = Field(gt=0)
    fallback_limits: dict[LoincCode, FallbackLimit] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fallbacks_are_convertible(self) -> ReferenceLimitRule:
        for code, fallback in self.fallback_limits.items():
            _check_units((code,), fallback.unit)
        return self

    def inputs(self) -> tuple[str, ...]:
        return self.loinc_codes

    def describe(self) -> str:
        return f"{self.operator} {_number(self.multiple)} x {self.limit}"


class BaselineChangeRule(RuleBase):
    """Fires on change from the subject's baseline (the last value on or before Day 0)."""

    kind: Literal["change_from_baseline"]
    loinc_codes: tuple[LoincCode, ...] = Field(min_length=1)
    change: Literal["ratio", "percent", "absolute"]
    operator: Operator
    amount: Decimal
    unit: str = Field(description="Unit the values are compared in.")
    needs_enrolment: bool = True

    @model_validator(mode="after")
    def _unit_is_convertible(self) -> BaselineChangeRule:
        _check_units(self.loinc_codes, self.unit)
        return self

    def inputs(self) -> tuple[str, ...]:
        return self.loinc_codes

    def describe(self) -> str:
        if self.change == "ratio":
            return f"{self.operator} {_number(self.amount)} x baseline"
        if self.change == "percent":
            return f"change from baseline {self.operator} {_number(self.amount)} %"
        return f"change from baseline {self.operator} {_number(self.amount)} {self.unit}"


class CreatinineClearanceRule(RuleBase):
    """Creatinine clearance, measured or computed by Cockcroft-Gault, against a threshold.

    Cockcroft-Gault: (140 - age) x weight [kg] / (72 x serum creatinine [mg/dL]), x 0.85 for
    women, with the weight nearest in time to the creatinine sample.
    """

    kind: Literal["creatinine_clearance"]
    creatinine_codes: tuple[LoincCode, ...] = ("2160-0",)
    measured_codes: tuple[LoincCode, ...] = ("2164-2",)
    weight_codes: tuple[LoincCode, ...] = ("29463-7",)
    operator: Operator
    threshold: Decimal
    unit: Literal["mL/min"] = "mL/min"
    female_factor: Decimal = Decimal("0.85")
    needs_enrolment: bool = True

    def inputs(self) -> tuple[str, ...]:
        return (*self.creatinine_codes, *self.measured_codes, *self.weight_codes)

    def describe(self) -> str:
        return f"creatinine clearance {self.operator} {_number(self.threshold)} {self.unit}"


class HysLawRule(RuleBase):
    """Potential Hy's law: ALT or AST > 3 x ULN with total bilirubin > 2 x ULN within a
    window, without initial cholestasis (alkaline phosphatase < 2 x ULN)."""

    kind: Literal["hys_law"]
    transaminase_codes: tuple[LoincCode, ...] = ("1742-6", "1920-8")
    bilirubin_codes: tuple[LoincCode, ...] = ("1975-2",)
    alkaline_phosphatase_codes: tuple[LoincCode, ...] = ("6768-6",)
    transaminase_multiple: Decimal = Decimal(3)
    bilirubin_multiple: Decimal = Decimal(2)
    alkaline_phosphatase_multiple: Decimal = Decimal(2)
    window_days: int = Field(default=30, ge=0)
    fallback_limits: dict[LoincCode, FallbackLimit] = Field(default_factory=dict)

    def inputs(self) -> tuple[str, ...]:
        return (*self.transaminase_codes, *self.bilirubin_codes, *self.alkaline_phosphatase_codes)

    def describe(self) -> str:
        return (
            f"ALT or AST > {_number(self.transaminase_multiple)} x ULN and total bilirubin > "
            f"{_number(self.bilirubin_multiple)} x ULN within {self.window_days} days, "
            f"alkaline phosphatase < {_number(self.alkaline_phosphatase_multiple)} x ULN"
        )


AdverseEventCriterion = Literal["serious", "serious-infection", "nyha-class", "pregnancy"]


class AdverseEventRule(RuleBase):
    """Fires on an adverse event report meeting a criterion; one episode per AE."""

    kind: Literal["adverse_event"]
    criterion: AdverseEventCriterion
    system_organ_class_codes: tuple[str, ...] = Field(
        default=(), description="MedDRA SOC codes (e.g. 10021881 Infections and infestations)."
    )
    meddra_codes: tuple[str, ...] = Field(default=(), description="MedDRA PT/LLT codes.")
    term_patterns: tuple[str, ...] = Field(
        default=(), description="Case-insensitive regular expressions for uncoded terms."
    )
    nyha_classes: tuple[Literal["I", "II", "III", "IV"], ...] = ("III", "IV")
    require_serious: bool = Field(default=False, description="Only serious reports count.")

    @model_validator(mode="after")
    def _patterns_compile(self) -> AdverseEventRule:
        for pattern in self.term_patterns:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"term pattern {pattern!r}: {error}") from None
        return self

    def inputs(self) -> tuple[str, ...]:
        return ("adverse-event",)

    def describe(self) -> str:
        if self.criterion == "serious":
            return "a serious adverse event (ICH E2A)"
        if self.criterion == "nyha-class":
            return f"heart failure NYHA class {' or '.join(self.nyha_classes)}"
        extra = " (serious)" if self.require_serious else ""
        return f"adverse event: {self.criterion}{extra}"


class DrugMatch(_Strict):
    """Recognises a drug by ATC code prefix or by name (case-insensitive, whole word)."""

    name: str
    atc: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    factor: Decimal = Field(default=Decimal(1), gt=0, description="mg reference per mg of drug.")


class MedicationRule(RuleBase):
    """Fires on medications: the summed daily dose of matching drugs (times each drug's
    equivalence factor) against a threshold, or any matching drug given by a route."""

    kind: Literal["medication"]
    criterion: Literal["daily-dose", "route"]
    drugs: tuple[DrugMatch, ...] = Field(default=(), description="Drugs that count.")
    atc_prefixes: tuple[str, ...] = Field(default=(), description="Any drug in these classes.")
    operator: Operator = ">"
    threshold: Decimal | None = Field(default=None, description="mg/day of the reference drug.")
    reference_drug: str | None = None
    routes: tuple[str, ...] = Field(
        default=(),
        description="Route spellings that count (a route rule needs them; for a dose rule "
        "they keep out, say, a hydrocortisone cream).",
    )

    @model_validator(mode="after")
    def _complete(self) -> MedicationRule:
        if self.criterion == "daily-dose" and (self.threshold is None or not self.drugs):
            raise ValueError("a daily-dose rule needs drugs and a threshold")
        if self.criterion == "route" and not self.routes:
            raise ValueError("a route rule needs routes")
        if not self.drugs and not self.atc_prefixes:
            raise ValueError("a medication rule needs drugs or atc_prefixes")
        return self

    def inputs(self) -> tuple[str, ...]:
        return ("medication",)

    def describe(self) -> str:
        if self.criterion == "route":
            return f"{self.title.lower()} given {' / '.join(self.routes[:2])}"
        assert self.threshold is not None
        ref = f" {self.reference_drug}-equivalent" if self.reference_drug else ""
        return f"daily dose{ref} {self.operator} {_number(self.threshold)} mg/day"


class QualitativeRule(RuleBase):
    """Fires on a coded result (positive, indeterminate) of a serology or pregnancy test."""

    kind: Literal["qualitative"]
    loinc_codes: tuple[LoincCode, ...] = Field(min_length=1)
    results: tuple[Literal["positive", "indeterminate"], ...] = ("positive",)

    def inputs(self) -> tuple[str, ...]:
        return self.loinc_codes

    def describe(self) -> str:
        return " or ".join(self.results)


class CodedResultRule(RuleBase):
    """Fires on a coded or text result that matches a pattern (e.g. an NYHA class recorded
    as an assessment, LOINC 88020-3)."""

    kind: Literal["coded_result"]
    loinc_codes: tuple[LoincCode, ...] = Field(min_length=1)
    patterns: tuple[str, ...] = Field(
        min_length=1, description="Case-insensitive regular expressions over the result."
    )
    finding: str = Field(description="What a match means, in words.")

    @model_validator(mode="after")
    def _patterns_compile(self) -> CodedResultRule:
        for pattern in self.patterns:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"pattern {pattern!r}: {error}") from None
        return self

    def inputs(self) -> tuple[str, ...]:
        return self.loinc_codes

    def describe(self) -> str:
        return self.finding


Rule = Annotated[
    AbsoluteThresholdRule
    | ReferenceLimitRule
    | BaselineChangeRule
    | CreatinineClearanceRule
    | HysLawRule
    | AdverseEventRule
    | MedicationRule
    | QualitativeRule
    | CodedResultRule,
    Field(discriminator="kind"),
]
KINDS = (
    "absolute_threshold",
    "reference_limit_multiple",
    "change_from_baseline",
    "creatinine_clearance",
    "hys_law",
    "adverse_event",
    "medication",
    "qualitative",
    "coded_result",
)


class RulePack(_Strict):
    """All rules of one study at one version."""

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
            field = ".".join(str(part) for part in location[2:] if part not in KINDS)
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
