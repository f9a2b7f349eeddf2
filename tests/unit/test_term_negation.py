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


@pytest.mark.parametrize(
    ("term", "kept", "gone"),
    [
        # an answer written after the item it answers (post-negation)
        ("Insomnia. Suicidal ideation: none", "Insomnia", "Suicidal"),
        ("Suicidal ideation negative", "", "Suicidal"),
        ("Suicide risk assessment: low", "", "Suicide"),
        ("自杀意念\uff1a无", "", "自杀"),  # a full-width colon
        ("Pregnancy test: negative", "", "Pregnancy"),
        ("Pregnancy test false positive", "", "Pregnancy"),
        # ConText: a history, and a relative's (family) history
        ("Cough; history of TB", "Cough", "TB"),
        ("Family history of suicide", "", "suicide"),
        ("Anxiety, family history of breast cancer", "Anxiety", "cancer"),
        ("焦虑\uff0c乳腺癌家族史", "焦虑", "癌"),
        ("Fever, hx of pneumonia", "Fever", "pneumonia"),
        # a procedure about the event, not the event
        ("Cancer screening", "", "Cancer"),
        ("TB screening negative", "", "TB"),
        ("COVID-19 vaccination", "", "COVID"),
        ("新冠疫苗接种", "", "新冠"),
        ("Admission for infection prophylaxis", "", "infection"),
        # the Chinese exclusion 除外 (as 排除)
        ("咳嗽\uff0c除外结核", "咳嗽", "结核"),
        # a scope ends at "despite", "following", "after"
        ("Pneumonia despite PCP prophylaxis", "Pneumonia", "PCP"),
        ("Herpes zoster following vaccination", "Herpes zoster", "vaccination"),
    ],
)
def test_an_answer_a_history_or_a_procedure_is_taken_out(term: str, kept: str, gone: str) -> None:
    read = without_negated(term)

    assert kept in read
    assert gone not in read
    assert len(read) == len(term)


@pytest.mark.parametrize(
    "term",
    [
        "TB screening positive",  # a positive screening is the finding
        "Cancer screening: abnormal",
        "Blood pressure: low",  # "low" answers only a risk, an assessment, a score
        "Platelets: low",
        "Suicide risk assessment: high",
        "Breast cancer ER negative",  # a receptor status, no negation
        "Breast cancer HER2-negative",
        "结核待除外",  # to be excluded: a suspicion
    ],
)
def test_a_positive_answer_a_measurement_or_a_receptor_status_is_kept(term: str) -> None:
    assert without_negated(term) == term


@pytest.mark.parametrize(
    ("term", "kept"),
    [
        # a procedure's scope is narrow and stops at a preposition: the reaction to a
        # vaccine is still the reaction
        ("Anaphylaxis to influenza vaccine", "Anaphylaxis to"),
        ("Allergic reaction after COVID-19 vaccination", "Allergic reaction after"),
        ("接种新冠疫苗后过敏性休克", "后过敏性休克"),
        ("Pneumonia, prophylaxis against PCP", "Pneumonia"),
    ],
)
def test_a_procedure_takes_out_only_what_it_is_about(term: str, kept: str) -> None:
    assert kept in without_negated(term)
