"""Outside tester, issue 15 round 2 (clinical pass 2): the NCT05262686 pack reviewed as a
safety physician would, for false alarms as much as misses. Each test fails today.

Every case runs through the real batch handler in memory (``tests.unit.test_clinical_cases``):
a default enrolment (woman born 1980-06-15, 60 kg, Day 0 2026-03-01) and then the facts.
A false alarm is not harmless here: each of these rules starts a clock to the medical monitor
or the safety desk, and a monitor who learns that "malignancy" means "malignant hypertension"
stops reading the alerts."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.test_clinical_cases import _run


def described(*facts: Any) -> list[str]:
    """What Vigil raised for these facts, each item one batch, as the case set writes it."""
    return _run({"facts": list(facts)})[0]


def rules(events: list[str]) -> set[str]:
    """The rules that raised, escalated or amended a signal (grade left off)."""
    return {e.split()[1] for e in events if e.split()[0] in ("raised", "escalated", "amended")}


def ae(term: str, **fields: Any) -> dict[str, Any]:
    return {"ae": {"id": "AE1", "term": term, **fields}}


SERIOUS = {"serious": True, "criteria": ["hospitalisation"]}


# --- malignancy: words that contain "malignant", "tumour", "cancer", 癌 -------------------------


@pytest.mark.parametrize(
    "term",
    [
        "Malignant hypertension",  # MedDRA PT, SOC Vascular disorders
        "恶性高血压",  # the same, in Chinese
        "Neuroleptic malignant syndrome",  # MedDRA PT, SOC Nervous system disorders
        "Hyperthermia malignant",  # MedDRA PT, SOC General disorders (anaesthetic reaction)
        "Pseudotumour cerebri",  # idiopathic intracranial hypertension, a steroid effect
        "Metastatic calcification",  # calcium-phosphate deposition, e.g. in renal failure
        "Tumour marker increased",  # MedDRA PT, SOC Investigations
        "癌胚抗原升高",  # carcinoembryonic antigen increased (SOC Investigations)
        "Cancer screening",  # a procedure, not a diagnosis
        "Anxiety, family history of breast cancer",  # the relative's disease
        "焦虑\uff0c乳腺癌家族史",  # the same, in Chinese
    ],
)
def test_a_term_that_names_no_malignancy_does_not_raise_the_malignancy_rule(term: str) -> None:
    """The malignancy rule is "MedDRA SOC Neoplasms benign, malignant and unspecified
    (10029104), or an uncoded term naming a malignancy" (belimumab USPI, Malignancy). None
    of these terms is in that SOC: MedDRA places Malignant hypertension under Vascular
    disorders, Neuroleptic malignant syndrome under Nervous system disorders, Hyperthermia
    malignant under General disorders, Tumour marker increased and Carcinoembryonic antigen
    increased (癌胚抗原 contains 癌, "cancer") under Investigations, Cancer screening under
    procedures, and a family history is the relative's condition (medical history, not an
    adverse event of the subject). The English "Carcinoembryonic antigen increased" already
    stays silent; each of these raises a malignancy signal to the medical monitor today."""
    events = described(ae(term))

    assert "malignancy" not in rules(events), events


# --- suicidality: a negative screen is not suicidal ideation ----------------------------------


@pytest.mark.parametrize(
    "term",
    [
        "Insomnia. Suicidal ideation: none",
        "Suicidal ideation negative",
        "Suicide risk assessment: low",
        "Family history of suicide",
        "自杀意念\uff1a无",  # suicidal ideation: none
    ],
)
def test_a_negative_suicidality_screen_does_not_raise_the_24_hour_suicidality_signal(
    term: str,
) -> None:
    """Investigators document the C-SSRS screen the belimumab label asks for (USPI,
    Depression and Suicidality) in the words above: the answer "none"/"negative"/"low" after
    the item, or a relative's suicide (family history, not the subject's behaviour). The
    pack already reads "no suicidal ideation", "denies suicidal ideation" and "无自杀意念" as
    negative, but not the answer written after a colon or the word "negative", nor a family
    history: each starts the 24-hour suicidality clock to the medical monitor for a subject
    who has no suicidal ideation (MedDRA: Suicidal ideation 10042458 is the subject's own)."""
    events = described(ae(term))

    assert "suicidal-ideation-or-behaviour" not in rules(events), events


def test_a_family_history_of_depression_is_not_depression() -> None:
    """ "Family history of depression" is the relative's disease, recorded as medical
    history (MedDRA LLT Family history of depression sits under SOC Social circumstances),
    not new or worsening depression in the subject (belimumab USPI, Depression and
    Suicidality). Today it raises the depression signal."""
    events = described(ae("Family history of depression"))

    assert "depression" not in rules(events), events


# --- tuberculosis, anaphylaxis: history and exclusion are not the event -------------------------


@pytest.mark.parametrize(
    ("term", "rule"),
    [
        ("Cough; history of TB", "tuberculosis"),
        ("TB screening negative", "tuberculosis"),
        ("咳嗽\uff0c除外结核", "tuberculosis"),  # cough, tuberculosis excluded
        ("Rash; history of anaphylaxis to penicillin", "anaphylaxis"),
    ],
)
def test_a_history_or_an_exclusion_is_not_the_event(term: str, rule: str) -> None:
    """The pack reads "TB excluded", "Tuberculosis ruled out" and "Anaphylaxis excluded" as
    negative, but not a history ("history of TB": an old, treated infection recorded at
    screening; a penicillin anaphylaxis years ago is an allergy history, not an anaphylaxis
    to belimumab, which the rule's action "do not give belimumab again" presumes), a
    negative screening test, nor the Chinese exclusion 除外结核 (the Chinese of "TB
    excluded", which the English form of the same phrase already honours). Each raises the
    tuberculosis rule (interrupt belimumab and IL-2) or the 24-hour anaphylaxis rule."""
    events = described(ae(term))

    assert rule not in rules(events), events


# --- hypersensitivity: "hypersensitivity" that is not an allergic or infusion reaction ------------


@pytest.mark.parametrize(
    "term",
    [
        "Dentine hypersensitivity",  # MedDRA PT, SOC Gastrointestinal disorders: tooth pain
        "Carotid sinus hypersensitivity",  # MedDRA PT, SOC Cardiac disorders: a reflex
    ],
)
def test_a_hypersensitivity_that_is_no_allergic_reaction_does_not_raise_the_reaction_rule(
    term: str,
) -> None:
    """The rule is CTCAE v5.0 Allergic reaction (10001718) and Infusion related reaction
    (10051792), grade 3 or worse, from the belimumab USPI (Hypersensitivity Reactions and
    Infusion Reactions). Dentine hypersensitivity is tooth sensitivity and carotid sinus
    hypersensitivity a cardiovascular reflex causing syncope; neither is an immune reaction
    to the infusion. Both start the 24-hour clock with "stop the infusion" today."""
    events = described(ae(term, grade=3))

    assert "hypersensitivity-infusion-reaction-grade-3" not in rules(events), events


# --- serious infection: vaccination, prophylaxis and history are not infections ----------------


@pytest.mark.parametrize(
    "term",
    [
        "COVID-19 vaccination",
        "Influenza vaccination",
        "Hepatitis B vaccination",
        "Herpes zoster vaccination",
        "Admission for infection prophylaxis",
        "History of herpes zoster",
    ],
)
def test_a_serious_report_that_names_no_infection_is_not_a_serious_infection(term: str) -> None:
    """sae-any rightly fires for a serious report whatever its term (ICH E2A). The
    serious-infection rule is the protocol's discontinuation signal, "an infection needing
    hospitalisation, or IV antibiotics" (registry; MedDRA SOC Infections and infestations
    10021881). A vaccination (MedDRA SOC Surgical and medical procedures, Immunisation),
    prophylaxis against infection and a past herpes zoster are not an infection: a
    hospitalisation for an event after a vaccine is sae-any's, and the pack already reads
    "no signs of infection" and "infection ruled out" as no infection. Today each raises a
    second 24-hour serious-infection signal to the safety desk."""
    events = described(ae(term, **SERIOUS))

    assert "serious-infection" not in rules(events), events


# --- pregnancy, PML: tests and antibodies are not the event ---------------------------------------


@pytest.mark.parametrize(
    "term",
    ["Pregnancy test false positive", "Pregnancy test: negative"],
)
def test_a_pregnancy_test_that_is_not_positive_is_not_a_pregnancy(term: str) -> None:
    """MedDRA PTs Pregnancy test false positive and Pregnancy test negative (SOC
    Investigations) are not a pregnancy (PT Pregnancy 10036556). The pack reads
    "Pregnancy test negative" as negative but not with a colon, nor a false positive: each
    starts the 24-hour pregnancy clock with "interrupt study drug" to the safety desk."""
    events = described(ae(term))

    assert "pregnancy-reported" not in rules(events), events


@pytest.mark.parametrize("term", ["JC virus antibody positive", "Anti-JCV antibody index 0.3"])
def test_a_jc_virus_antibody_result_is_not_pml(term: str) -> None:
    """About half of adults carry JC virus antibodies; the antibody (MedDRA PT JC virus test
    positive, SOC Investigations) is a risk marker, not progressive multifocal
    leukoencephalopathy, which is a clinical and MRI diagnosis confirmed by JC virus DNA in
    CSF (belimumab USPI, PML: "if PML is suspected"). An antibody index of 0.3 is even
    negative on the STRATIFY assay. Today both raise the PML rule: suspend belimumab and all
    immunosuppressants, 24-hour report to the safety desk."""
    events = described(ae(term))

    assert "progressive-multifocal-leukoencephalopathy" not in rules(events), events


# --- onset before Day 0 ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("term", "rule"),
    [
        ("Suicidal ideation", "suicidal-ideation-or-behaviour"),
        ("Pulmonary tuberculosis", "tuberculosis"),
        ("Breast cancer", "malignancy"),
    ],
)
def test_an_event_that_began_and_ended_a_year_before_day_0_raises_no_on_study_signal(
    term: str, rule: str
) -> None:
    """ICH E2A defines an adverse event as an occurrence in a subject administered a
    product; an event that both began and ended more than a year before Day 0 (before any
    screening window, so before consent) is medical history (CDASH MH, not AE). A safety
    physician expects no on-study signal for it (a data-quality issue asking why a
    year-old history was sent as an adverse event is welcome). Today the rule is raised
    (and resolved in the same breath), which starts the rule's clock and notifies its
    recipients about a condition the subject had before the study."""
    events = described(ae(term, onset=-400, end=-380, outcome="recovered"))

    assert rule not in rules(events), events


# --- misses: the events these rules exist for, written as MedDRA and Chinese sites write them -----


@pytest.mark.parametrize(
    "term",
    ["Abortion spontaneous", "Miscarriage", "流产", "Foetal death", "hCG positive"],
)
def test_a_pregnancy_outcome_or_a_positive_hcg_reported_as_an_adverse_event_is_a_pregnancy(
    term: str,
) -> None:
    """A spontaneous abortion, a miscarriage (流产), a foetal death are MedDRA PTs of the SOC
    Pregnancy, puerperium and perinatal conditions (10036585), the very SOC the rule names,
    and mean the subject was pregnant while on belimumab (USPI, Use in Specific Populations:
    pregnancy registry); MedDRA PT Human chorionic gonadotropin positive is the pregnancy
    test. The rule reads uncoded terms only for "pregnan"/妊娠, so these raise nothing
    today: no signal and no data-quality event, for a pregnancy the sponsor must hear of
    within 24 hours."""
    events = described(ae(term))

    assert "pregnancy-reported" in rules(events), events


@pytest.mark.parametrize(
    "term",
    ["Interferon gamma release assay positive", "Quantiferon positive"],
)
def test_a_positive_igra_reported_as_an_adverse_event_raises_tuberculosis(term: str) -> None:
    """Issue 15: "TB (positive IGRA, or a TB adverse event)". MedDRA PT Interferon gamma
    release assay positive (and the brand QuantiFERON that sites write) is latent
    tuberculosis until shown otherwise. "Tuberculin test positive" and the Chinese T-SPOT
    term already raise the tuberculosis rule; the IGRA reported as an adverse event raises
    nothing, with no data-quality event."""
    events = described(ae(term))

    assert "tuberculosis" in rules(events), events


def test_pml_in_its_other_chinese_spelling_fires() -> None:
    """进行性多灶性脑白质病 is the spelling of PML in many Chinese discharge letters and
    papers (脑白质病, "leukoencephalopathy", beside the pack's 白质脑病). The belimumab USPI
    (PML) asks for immunosuppressants to be suspended when PML is suspected, whatever the
    seriousness; today this report raises nothing, not even a data-quality event."""
    events = described(ae("进行性多灶性脑白质病"))

    assert "progressive-multifocal-leukoencephalopathy" in rules(events), events


def test_intentional_overdose_in_meddra_llt_word_order_is_suicidal_behaviour() -> None:
    """ "Overdose, intentional" is how coded lists and many EDC verbatims invert MedDRA PT
    Intentional overdose; the pack treats "intentional overdose" as suicidal behaviour
    (belimumab USPI, Depression and Suicidality) but the inverted form raises nothing."""
    events = described(ae("Overdose, intentional"))

    assert "suicidal-ideation-or-behaviour" in rules(events), events


def test_a_grade_3_reaction_after_the_infusion_is_an_infusion_reaction() -> None:
    """Bronchospasm "after infusion" at CTCAE grade 3 is an infusion related reaction
    (CTCAE v5.0 10051792; the belimumab USPI warns of infusion reactions, sometimes
    delayed). The rule reads "post-infusion" but not "after infusion", so this raises
    nothing: no signal, no data-quality event."""
    events = described(ae("Bronchospasm after infusion", grade=3))

    assert "hypersensitivity-infusion-reaction-grade-3" in rules(events), events
