"""The condition kinds a rule can have, each a validated model with its own parameters.

This module holds the kinds that read lab results, and ``Rule``, the union of all kinds told
apart by ``kind``; adverse-event and medication kinds are in ``event_rule_kinds.py``. The
code that judges each kind against a subject's history is in ``conditions/``.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, model_validator

from services.safety_rules.domain.event_rule_kinds import AdverseEventRule, MedicationRule
from services.safety_rules.domain.rule_terms import (
    FallbackLimit,
    Operator,
    RuleBase,
    Strict,
    certainly,
    plain_number,
)
from shared.analytes import UnitNotConvertible, analyte_for, analyte_named, codes_of

LoincCode = Annotated[str, Field(pattern=r"^\d{1,7}-\d$")]
_LOINC = re.compile(r"^\d{1,7}-\d$")


def _fallbacks_by_analyte(data: object) -> object:
    """``fallback_limits`` are keyed by analyte name (a limit holds for every code of the
    analyte); a key that is a LOINC code is read as its analyte."""
    if not isinstance(data, dict) or not isinstance(data.get("fallback_limits"), dict):
        return data
    keyed = {}
    for key, limit in data["fallback_limits"].items():
        name = str(key)
        if _LOINC.match(name):
            analyte = analyte_for(name)
            if analyte is None:
                raise ValueError(f"fallback limit for LOINC {name}: not in Vigil's catalogue")
            name = analyte.name
        keyed[name] = limit
    return {**data, "fallback_limits": keyed}


def _check_fallbacks(fallbacks: dict[str, FallbackLimit]) -> None:
    for name, fallback in fallbacks.items():
        analyte = analyte_named(name)
        try:
            analyte.to_canonical(Decimal(1), fallback.unit)
        except UnitNotConvertible as error:
            raise ValueError(str(error)) from None


class HasFallbackLimits(RuleBase):
    """A rule that reads a laboratory's limit, with the pack's limit per analyte for a
    result sent without one."""

    fallback_limits: dict[str, FallbackLimit] = Field(
        default_factory=dict, description="By analyte name (a LOINC code reads as its analyte)."
    )

    @model_validator(mode="before")
    @classmethod
    def _fallbacks_keyed(cls, data: object) -> object:
        return _fallbacks_by_analyte(data)

    @model_validator(mode="after")
    def _fallbacks_are_convertible(self) -> HasFallbackLimits:
        _check_fallbacks(self.fallback_limits)
        return self


class ReadsAnalytes(RuleBase):
    """A rule over lab results names the analytes it reads (``analytes``, by their names in
    Vigil's catalogue, ``shared/analytes.py``, the one place that knows an analyte's
    codes); its ``loinc_codes`` are then every code of those analytes, plus any the pack
    lists itself."""

    analytes: tuple[str, ...] = ()
    loinc_codes: tuple[LoincCode, ...] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _codes_of_analytes(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("analytes"):
            codes = codes_of(*data["analytes"])
            data = {
                **data,
                "loinc_codes": tuple(dict.fromkeys((*codes, *data.get("loinc_codes", ())))),
            }
        return data


def _check_units(codes: tuple[str, ...], unit: str) -> None:
    for code in codes:
        analyte = analyte_for(code)
        if analyte is None:
            raise ValueError(f"LOINC {code} is not in Vigil's analyte catalogue")
        try:
            analyte.to_canonical(Decimal(1), unit)
        except UnitNotConvertible as error:
            raise ValueError(str(error)) from None


class FromPercent(Strict):
    """An absolute count derived from a differential percentage and the total count of the
    same specimen (e.g. neutrophils % of leukocytes x WBC)."""

    percent: str | None = Field(default=None, description="The percentage's analyte name.")
    total: str | None = Field(default=None, description="The total count's analyte name.")
    percent_code: LoincCode | None = None
    total_code: LoincCode | None = None

    @model_validator(mode="after")
    def _named_once(self) -> FromPercent:
        for name, code, what in (
            (self.percent, self.percent_code, "percent"),
            (self.total, self.total_code, "total"),
        ):
            if (name is None) == (code is None):
                raise ValueError(f"give {what} (an analyte name) or {what}_code, not both")
            if name is not None:
                analyte_named(name)  # ValueError naming the known ones
        return self

    @property
    def percent_codes(self) -> tuple[str, ...]:
        return codes_of(self.percent) if self.percent else (self.percent_code or "",)

    @property
    def total_codes(self) -> tuple[str, ...]:
        return codes_of(self.total) if self.total else (self.total_code or "",)


class AbsoluteThresholdRule(ReadsAnalytes):
    """Fires when an analyte, in the rule's unit, compares true against a fixed threshold."""

    kind: Literal["absolute_threshold"]
    operator: Operator
    threshold: Decimal
    unit: str
    derive_from_percent: tuple[FromPercent, ...] = Field(
        default=(),
        description="Also judge counts derived from a percentage and the specimen's total.",
    )
    laboratory_limit: Literal["ULN", "LLN"] | None = Field(
        default=None,
        description="When the result carries its laboratory's limit (HL7 OBX-7, FHIR "
        "referenceRange high or low), the rule also holds when the result meets that limit "
        "in the result's own unit (the assay's cut-off): the more alerting of the two.",
    )

    @model_validator(mode="after")
    def _unit_is_convertible(self) -> AbsoluteThresholdRule:
        _check_units(self.loinc_codes, self.unit)
        _check_units(tuple(c for d in self.derive_from_percent for c in d.total_codes), self.unit)
        return self

    def holds(
        self, value: Decimal, comparator: str | None = None, threshold: Decimal | None = None
    ) -> bool | None:
        """Whether ``value`` (in the rule's unit, or the unit of ``threshold`` when that is
        the laboratory's) meets the condition; a censored value as far as it is certain
        (None: its comparator leaves it open)."""
        bound = self.threshold if threshold is None else threshold
        return certainly(value, comparator, self.operator, bound)

    def inputs(self) -> tuple[str, ...]:
        derived = [
            code for d in self.derive_from_percent for code in (*d.percent_codes, *d.total_codes)
        ]
        return (*self.loinc_codes, *derived)

    def describe(self) -> str:
        text = f"{self.operator} {plain_number(self.threshold)} {self.unit}"
        if self.laboratory_limit:
            text += f", or {self.operator} the laboratory's {self.laboratory_limit} when sent"
            # (whichever is met first)
        return text


class ReferenceLimitRule(ReadsAnalytes, HasFallbackLimits):
    """Fires when a result compares against a multiple of its own laboratory's ULN or LLN."""

    kind: Literal["reference_limit_multiple"]
    limit: Literal["ULN", "LLN"]
    operator: Operator
    multiple: Decimal = Field(gt=0)

    def inputs(self) -> tuple[str, ...]:
        return self.loinc_codes

    def describe(self) -> str:
        return f"{self.operator} {plain_number(self.multiple)} x {self.limit}"


class BaselineChangeRule(ReadsAnalytes):
    """Fires on change from the subject's baseline (the last value on or before Day 0)."""

    kind: Literal["change_from_baseline"]
    change: Literal["ratio", "percent", "absolute"]
    operator: Operator
    amount: Decimal
    unit: str = Field(description="Unit the values are compared in.")
    needs_enrolment: bool = True
    without_baseline: Literal["uln"] | None = Field(
        default=None,
        description=(
            "uln: with no baseline, a ratio rule judges each result after Day 0 as a "
            "multiple of its laboratory's ULN against the same amount, graded on the ULN "
            "bands (CTCAE grades Creatinine increased on either basis, grade 4 on ULN alone)"
        ),
    )

    @model_validator(mode="after")
    def _unit_is_convertible(self) -> BaselineChangeRule:
        _check_units(self.loinc_codes, self.unit)
        if self.without_baseline is not None and self.change != "ratio":
            raise ValueError("without_baseline: uln is for a ratio rule (change: ratio)")
        return self

    def inputs(self) -> tuple[str, ...]:
        return self.loinc_codes

    def describe(self) -> str:
        if self.change == "ratio":
            text = f"{self.operator} {plain_number(self.amount)} x baseline"
            if self.without_baseline == "uln":
                text += " (x ULN without a baseline)"
            return text
        if self.change == "percent":
            return f"change from baseline {self.operator} {plain_number(self.amount)} %"
        return f"change from baseline {self.operator} {plain_number(self.amount)} {self.unit}"


class CreatinineClearanceRule(RuleBase):
    """Creatinine clearance, measured or computed by Cockcroft-Gault, against a threshold.

    Cockcroft-Gault: (140 - age) x weight [kg] / (72 x serum creatinine [mg/dL]), x 0.85 for
    women, with the weight nearest in time to the creatinine sample.
    """

    kind: Literal["creatinine_clearance"]
    creatinine_codes: tuple[LoincCode, ...] = codes_of("creatinine")
    measured_codes: tuple[LoincCode, ...] = codes_of("creatinine clearance")
    weight_codes: tuple[LoincCode, ...] = codes_of("body weight")
    operator: Operator
    threshold: Decimal
    unit: Literal["mL/min"] = "mL/min"
    female_factor: Decimal = Decimal("0.85")
    needs_enrolment: bool = True

    def inputs(self) -> tuple[str, ...]:
        return (*self.creatinine_codes, *self.measured_codes, *self.weight_codes)

    def describe(self) -> str:
        return f"creatinine clearance {self.operator} {plain_number(self.threshold)} {self.unit}"


class HysLawRule(HasFallbackLimits):
    """Potential Hy's law: ALT or AST > 3 x ULN with total bilirubin > 2 x ULN within a
    window, without initial cholestasis (alkaline phosphatase < 2 x ULN)."""

    kind: Literal["hys_law"]
    transaminase_codes: tuple[LoincCode, ...] = codes_of("ALT", "AST")
    bilirubin_codes: tuple[LoincCode, ...] = codes_of("total bilirubin")
    alkaline_phosphatase_codes: tuple[LoincCode, ...] = codes_of("alkaline phosphatase")
    transaminase_multiple: Decimal = Decimal(3)
    bilirubin_multiple: Decimal = Decimal(2)
    alkaline_phosphatase_multiple: Decimal = Decimal(2)
    window_days: int = Field(default=30, ge=0)

    def inputs(self) -> tuple[str, ...]:
        return (*self.transaminase_codes, *self.bilirubin_codes, *self.alkaline_phosphatase_codes)

    def describe(self) -> str:
        return (
            f"ALT or AST > {plain_number(self.transaminase_multiple)} x ULN and total bilirubin > "
            f"{plain_number(self.bilirubin_multiple)} x ULN within {self.window_days} days, "
            f"alkaline phosphatase < {plain_number(self.alkaline_phosphatase_multiple)} x ULN"
        )


class QualitativeRule(ReadsAnalytes):
    """Fires on a coded result (positive, indeterminate) of a serology or pregnancy test."""

    kind: Literal["qualitative"]
    results: tuple[Literal["positive", "indeterminate"], ...] = ("positive",)

    def inputs(self) -> tuple[str, ...]:
        return self.loinc_codes

    def describe(self) -> str:
        return " or ".join(self.results)


class CodedResultRule(ReadsAnalytes):
    """Fires on a coded or text result that matches a pattern (e.g. an NYHA class recorded
    as an assessment, LOINC 88020-3)."""

    kind: Literal["coded_result"]
    patterns: tuple[str, ...] = Field(
        min_length=1, description="Case-insensitive regular expressions over the result."
    )
    other_answers: tuple[str, ...] = Field(
        default=(),
        description="Patterns of the answers the rule reads as not matching (NYHA class I "
        "or II); when given, a result that matches neither these nor ``patterns`` cannot "
        "be read and raises result-unreadable instead of passing in silence.",
    )
    finding: str = Field(description="What a match means, in words.")

    @model_validator(mode="after")
    def _patterns_compile(self) -> CodedResultRule:
        for pattern in (*self.patterns, *self.other_answers):
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
