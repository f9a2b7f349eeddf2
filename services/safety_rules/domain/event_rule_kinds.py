"""The condition kinds that read adverse events and medications rather than lab results."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Literal

from pydantic import Field, model_validator

from services.safety_rules.domain.rule_terms import Operator, RuleBase, Strict, plain_number

AdverseEventCriterion = Literal[
    "serious", "serious-infection", "nyha-class", "pregnancy", "named-event"
]


class AdverseEventRule(RuleBase):
    """Fires on an adverse event report meeting a criterion; one episode per AE.

    ``serious``: any serious report. ``serious-infection``: a serious report naming an
    infection. ``nyha-class``: heart failure of a listed NYHA class, sent as the report's
    class or named in its term. ``pregnancy`` and ``named-event``: a report naming the event
    (by MedDRA code or term) whatever its seriousness. ``min_grade`` and ``require_serious``
    narrow any criterion."""

    kind: Literal["adverse_event"]
    criterion: AdverseEventCriterion
    system_organ_class_codes: tuple[str, ...] = Field(
        default=(), description="MedDRA SOC codes (e.g. 10021881 Infections and infestations)."
    )
    meddra_codes: tuple[str, ...] = Field(default=(), description="MedDRA PT/LLT codes.")
    term_patterns: tuple[str, ...] = Field(
        default=(), description="Case-insensitive regular expressions for uncoded terms."
    )
    term_exclusions: tuple[str, ...] = Field(
        default=(),
        description="Case-insensitive regular expressions for phrases that name something "
        'else ("non-infectious", "aseptic meningitis", "autoimmune hepatitis"): they '
        "are taken out of the term before term_patterns are tried, so the rest of the term "
        "still counts. Codes are not affected.",
    )
    nyha_classes: tuple[Literal["I", "II", "III", "IV"], ...] = ("III", "IV")
    require_serious: bool = Field(default=False, description="Only serious reports count.")
    min_grade: int | None = Field(
        default=None,
        ge=1,
        le=5,
        description="Only reports of at least this CTCAE grade count. Without a grade the "
        "severity stands for it (mild 1, moderate 2, severe 3, as CTCAE v5.0 names its "
        "grades) and a serious report counts; a report with none of these cannot be "
        "judged and raises a data-quality issue.",
    )

    @model_validator(mode="after")
    def _patterns_compile(self) -> AdverseEventRule:
        for pattern in (*self.term_patterns, *self.term_exclusions):
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"term pattern {pattern!r}: {error}") from None
        if self.criterion == "named-event" and not (
            self.term_patterns or self.meddra_codes or self.system_organ_class_codes
        ):
            raise ValueError("a named-event rule needs term_patterns or MedDRA codes")
        return self

    def inputs(self) -> tuple[str, ...]:
        return ("adverse-event",)

    def describe(self) -> str:
        if self.criterion == "serious":
            return "a serious adverse event (ICH E2A)"
        if self.criterion == "nyha-class":
            return f"heart failure NYHA class {' or '.join(self.nyha_classes)}"
        if self.criterion == "named-event":
            described = f"adverse event: {self.title[:1].lower()}{self.title[1:]}"
        else:
            described = f"adverse event: {self.criterion}"
        if self.min_grade is not None:
            described += f", CTCAE grade >= {self.min_grade}"
        return described + (" (serious)" if self.require_serious else "")


class DrugMatch(Strict):
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
        return f"daily dose{ref} {self.operator} {plain_number(self.threshold)} mg/day"
