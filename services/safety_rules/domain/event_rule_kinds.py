"""The condition kinds that read adverse events and medications rather than lab results."""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction
from typing import Literal

from pydantic import Field, model_validator

from services.safety_rules.domain.rule_terms import Operator, RuleBase, Strict, plain_number
from shared.analytes import codes_of

AdverseEventCriterion = Literal[
    "serious", "serious-infection", "nyha-class", "pregnancy", "named-event"
]


class AdverseEventRule(RuleBase):
    """Fires on an adverse event report meeting a criterion; one episode per AE.

    ``serious``: any serious report (one that ended in death, CTCAE grade 5 or outcome
    fatal, is serious whatever its flag: ICH E2A). ``serious-infection``: a serious report
    (or one of at least ``serious_from_grade``) naming an infection. ``nyha-class``: heart
    failure of a listed NYHA class, sent as the report's class or named in its term; with
    neither, a heart-failure report of CTCAE grade 3 or worse (CTCAE v5.0: symptoms at rest
    or with minimal exertion, i.e. class III-IV). ``pregnancy`` and ``named-event``: a
    report naming the event (by MedDRA code or term) whatever its seriousness.
    ``min_grade`` and ``require_serious`` narrow any criterion."""

    kind: Literal["adverse_event"]
    criterion: AdverseEventCriterion
    system_organ_class_codes: tuple[str, ...] = Field(
        default=(), description="MedDRA SOC codes (e.g. 10021881 Infections and infestations)."
    )
    meddra_codes: tuple[str, ...] = Field(default=(), description="MedDRA PT/LLT codes.")
    except_meddra_codes: tuple[str, ...] = Field(
        default=(),
        description="MedDRA PT/LLT codes of events that are another rule's (a report coded "
        "Anaphylactic reaction is not the hypersensitivity rule's, whatever its term).",
    )
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
    serious_from_grade: int | None = Field(
        default=None,
        ge=1,
        le=5,
        description="serious-infection: a report of at least this CTCAE grade counts as "
        "serious whatever its flag (CTCAE v5.0 grades every infection 3 when IV "
        "anti-infectives are indicated).",
    )
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
    """A drug a rule counts, by its name in Vigil's drug table (``conditions/drug_names.py``,
    which knows its ATC codes and the names sites write it by), by ATC code prefix, or by
    further names (word parts, case-insensitive)."""

    name: str
    atc: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    factor: Fraction = Field(
        default=Fraction(1),
        gt=0,
        description="mg of the reference drug per mg of this drug, exact (e.g. 20/3).",
    )

    @model_validator(mode="after")
    def _known(self) -> DrugMatch:
        # the word tables live with the conditions, whose package imports the rule kinds:
        # imported when a rule is read, not when this module is
        from services.safety_rules.domain.conditions.drug_names import known

        if not known(self.name) and not self.atc and not self.aliases:
            raise ValueError(
                f"drug {self.name!r} is not in Vigil's drug table: give its atc or aliases"
            )
        return self

    @property
    def atc_codes(self) -> tuple[str, ...]:
        from services.safety_rules.domain.conditions.drug_names import ATC_OF

        return self.atc or ATC_OF.get(self.name, ())


MedicationCriterion = Literal["daily-dose", "daily-dose-per-kg", "route", "any"]
_STEM = re.compile(r"^(?:-[^-\s]+-|-[^-\s]+|[^-\s]+-)$")


class MedicationRule(RuleBase):
    """Fires on medications: the summed daily dose of matching drugs (times each drug's
    equivalence factor) against a threshold, per kg of the subject's body weight
    (``daily-dose-per-kg``), any matching drug given by one of the rule's routes
    (``route``), or any matching drug at all (``any``).

    Routes are canonical (``medication_words.ROUTES``): a route as sent is read into one,
    and a matching drug whose route cannot be read raises a data-quality issue."""

    kind: Literal["medication"]
    criterion: MedicationCriterion
    drugs: tuple[DrugMatch, ...] = Field(default=(), description="Drugs that count.")
    atc_prefixes: tuple[str, ...] = Field(default=(), description="Any drug in these classes.")
    name_stems: tuple[str, ...] = Field(
        default=(),
        description="Word parts that make a drug count: 'cef-' (a part begins so), "
        "'-penem' (ends so), '-cillin-' (contains it).",
    )
    except_drugs: tuple[str, ...] = Field(
        default=(), description="Drugs (by name, and their ATC codes) that never count."
    )
    operator: Operator = ">"
    threshold: Decimal | None = Field(
        default=None, description="mg/day of the reference drug (mg/kg/day per kg)."
    )
    reference_drug: str | None = None
    routes: tuple[str, ...] = Field(
        default=(),
        description="Canonical routes that count (a route rule needs them; for a dose rule "
        "they keep out, say, a hydrocortisone cream).",
    )
    weight_analyte: str = Field(
        default="body weight", description="The analyte a per-kg rule reads weights from."
    )

    @model_validator(mode="after")
    def _complete(self) -> MedicationRule:
        from services.safety_rules.domain.conditions.medication_words import ROUTES

        if self.criterion.startswith("daily-dose") and (self.threshold is None or not self.drugs):
            raise ValueError("a daily-dose rule needs drugs and a threshold")
        if self.criterion == "route" and not self.routes:
            raise ValueError("a route rule needs routes")
        if not self.drugs and not self.atc_prefixes and not self.name_stems:
            raise ValueError("a medication rule needs drugs, atc_prefixes or name_stems")
        unknown = [r for r in self.routes if r not in ROUTES]
        if unknown:
            raise ValueError(f"routes {unknown} are not canonical routes ({', '.join(ROUTES)})")
        bad = [s for s in self.name_stems if not _STEM.match(s)]
        if bad:
            raise ValueError(f"name stems {bad}: write 'cef-', '-penem' or '-cillin-'")
        return self

    @property
    def weight_codes(self) -> tuple[str, ...]:
        return codes_of(self.weight_analyte)

    def inputs(self) -> tuple[str, ...]:
        if self.criterion == "daily-dose-per-kg":
            return ("medication", *self.weight_codes)
        return ("medication",)

    def describe(self) -> str:
        if self.criterion == "route":
            return f"{self.title.lower()} (route: {' or '.join(self.routes)})"
        if self.criterion == "any":
            return f"{self.title.lower()} (any route)"
        assert self.threshold is not None
        # equivalents only when doses of several drugs are summed
        several = len(self.drugs) > 1 and self.reference_drug
        ref = f" {self.reference_drug}-equivalent" if several else ""
        per = "/kg" if self.criterion == "daily-dose-per-kg" else ""
        return f"daily dose{ref} {self.operator} {plain_number(self.threshold)} mg{per}/day"
