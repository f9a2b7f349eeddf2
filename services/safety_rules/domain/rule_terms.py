"""The terms every rule is written in: comparison operators, grading bands, fallback limits,
how a number reads in a rule's description, and what every rule says besides its condition.

Shared by the rule kinds (``rule_kinds.py``, ``event_rule_kinds.py``), the pack
(``rule_pack.py``) and the code that judges conditions (``conditions/``).
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

Operator = Literal["<", "<=", ">", ">="]
Basis = Literal["value", "uln", "lln", "baseline"]
Role = Annotated[str, Field(pattern=r"^[a-z][a-z-]*$")]
RuleId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]


Exact = TypeVar("Exact", Decimal, Fraction)


def compare(value: Exact, operator: Operator, bound: Exact) -> bool:
    """``value operator bound`` for an exact value (a decimal, or a fraction: 1.5 mg
    dexamethasone x 20/3 is exactly 10)."""
    if operator == "<":
        return value < bound
    if operator == "<=":
        return value <= bound
    if operator == ">":
        return value > bound
    return value >= bound


def may_hold(value: Decimal, comparator: str | None, operator: Operator, bound: Decimal) -> bool:
    """Whether a possibly censored value may meet ``operator bound``: some value the
    censored result allows meets it (``<0.5`` may meet ``< 0.3``; ``>7`` may meet ``<= 9``)."""
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


def surely_holds(
    value: Decimal, comparator: str | None, operator: Operator, bound: Decimal
) -> bool:
    """Whether a possibly censored value certainly meets ``operator bound``: every value
    the censored result allows meets it (``<0.5`` meets ``< 1.0``; ``>7`` meets ``>= 5``
    but not ``<= 9``)."""
    if comparator in (None, "="):
        return compare(value, operator, bound)
    below = comparator in ("<", "<=")
    if below != (operator in ("<", "<=")):
        return False
    if comparator in ("<", ">"):
        return compare(value, "<=" if below else ">=", bound)
    return compare(value, operator, bound)


def certainly(
    value: Decimal, comparator: str | None, operator: Operator, bound: Decimal
) -> bool | None:
    """A possibly censored value against ``operator bound``, as far as it is certain: True
    when every value it allows meets the condition, False when none does, None when the
    comparator leaves it open (``>7`` against ``<= 9``): only the exact value can tell."""
    if surely_holds(value, comparator, operator, bound):
        return True
    if not may_hold(value, comparator, operator, bound):
        return False
    return None


class Strict(BaseModel):
    """Frozen, and a field the model does not know is an error, not ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Band(Strict):
    """One grade: the finding has this grade when ``quantity operator bound`` holds."""

    grade: int = Field(ge=1, le=5)
    operator: Operator
    bound: Decimal
    basis: Basis | None = Field(
        default=None, description="What ``bound`` is compared with; the grading's by default."
    )


class Grading(Strict):
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


class FallbackLimit(Strict):
    """A reference limit to use when the laboratory sent none (flagged as a data problem).

    One ``value`` for everyone, or a limit for each sex (``female`` and ``male``, e.g. a
    transaminase ULN): the subject's own when its sex is known, otherwise the more
    alerting of the two (the lower ULN, the higher LLN)."""

    value: Decimal | None = Field(default=None, gt=0)
    female: Decimal | None = Field(default=None, gt=0)
    male: Decimal | None = Field(default=None, gt=0)
    unit: str
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _one_value_or_one_per_sex(self) -> FallbackLimit:
        by_sex = (self.female is not None, self.male is not None)
        if self.value is None and by_sex != (True, True):
            raise ValueError("a fallback limit needs a value, or both a female and a male one")
        if self.value is not None and any(by_sex):
            raise ValueError("a fallback limit has a value or limits by sex, not both")
        return self

    def for_sex(self, sex: str | None, limit: Literal["ULN", "LLN"]) -> tuple[Decimal, str]:
        """The limit for a subject of this sex (HL7 table 0001: F, M; anything else is
        unknown), and in words whose it is."""
        if self.value is not None:
            return self.value, ""
        assert self.female is not None
        assert self.male is not None
        if sex == "F":
            return self.female, "female"
        if sex == "M":
            return self.male, "male"
        pick = min if limit == "ULN" else max
        return pick(self.female, self.male), "sex unknown: the more alerting limit"


class RuleBase(Strict):
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


def plain_number(value: Decimal) -> str:
    """A decimal as a rule's description writes it: no exponent, no trailing zeros."""
    return f"{value.normalize():f}"
