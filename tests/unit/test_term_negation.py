"""What an adverse-event term names only to rule it out (NegEx triggers, pure)."""

from __future__ import annotations

import pytest

from services.safety_rules.domain.conditions.term_negation import without_negated


@pytest.mark.parametrize(
    ("term", "kept", "gone"),
    [
        ("Depression (suicidal ideation denied)", "Depression", "suicidal"),
        ("Depression, denies suicidal ideation", "Depression", "suicidal"),
        ("Encephalopathy, PML ruled out", "Encephalopathy", "PML"),
        ("Pneumonia, tuberculosis excluded", "Pneumonia", "tuberculosis"),
        ("Pneumonia without sepsis", "Pneumonia", "sepsis"),
        ("Pregnancy test negative", "", "Pregnancy"),
        ("Depression with suicidal ideation denied", "Depression", "suicidal"),
        ("肺炎\uff0c排除结核", "肺炎", "结核"),  # a full-width comma
        ("妊娠试验阴性", "", "妊娠"),
        ("否认自杀意念", "", "自杀"),
        ("no fever but pneumonia", "pneumonia", "fever"),
    ],
)
def test_a_negated_finding_is_taken_out_and_the_rest_of_the_term_kept(
    term: str, kept: str, gone: str
) -> None:
    read = without_negated(term)

    assert kept in read
    assert gone not in read
    assert len(read) == len(term)


@pytest.mark.parametrize(
    "term",
    [
        "PML not ruled out",
        "PML cannot be excluded",
        "Rule out PML",  # a work-up under way: a suspicion
        "Exclusion of PML pending",
        "Gram-negative sepsis",
        "E. coli sepsis gram negative",
        "Breast cancer triple negative",
        "不能排除结核",
        "结核待排",
    ],
)
def test_what_only_looks_like_a_negation_is_kept(term: str) -> None:
    assert without_negated(term) == term
