"""Outside tester, issue 15 (clinical pass 2), medications: inputs a site or pharmacy sends
for which Vigil does the wrong thing for a subject's safety.

Each case runs through the real batch handler in memory (the clinical-case route). A case
lists the signal a safety physician expects; the check is that this signal is raised. Where
an input cannot be placed at all, the check is that no signal is raised and a data-quality
issue says why.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.test_clinical_cases import _run

STEROID = "raised steroid-prednisone-equivalent-gt-10"
IV_ANTI_INFECTIVE = "raised serious-infection-iv-antibiotics"
PROHIBITED_BIOLOGIC = "raised prohibited-biologic-therapy"
PROHIBITED_CYCLOPHOSPHAMIDE = "raised prohibited-iv-cyclophosphamide"
LIVE_VACCINE = "raised prohibited-live-vaccine"
HCQ_PER_KG = "raised hydroxychloroquine-gt-5-mg-kg"


def _med(**med: Any) -> dict[str, Any]:
    return {"facts": [{"med": med}]}


def _raises(case: dict[str, Any], expected: str) -> None:
    described, _ = _run(case)
    assert expected in described, f"expected {expected!r}, Vigil said {described}"


# -- routes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "med", "expected"),
    [
        ("20045000", {"drug": "Ceftriaxone", "dose": 2, "unit": "g"}, IV_ANTI_INFECTIVE),
        ("20053000", {"drug": "Prednisone", "dose": 15}, STEROID),
        ("20066000", {"drug": "Dexamethasone", "dose": 4}, STEROID),
        ("20035000", {"drug": "Dexamethasone", "dose": 4}, STEROID),
    ],
    ids=["intravenous-use", "oral-use", "subcutaneous-use", "intramuscular-use"],
)
def test_edqm_route_codes_are_read(route: str, med: dict[str, Any], expected: str) -> None:
    """Issue 15 item 3 asks for EDQM route codes. EDQM Standard Terms give each route a
    numeric code (Intravenous use 20045000, Oral use 20053000, Subcutaneous use 20066000,
    Intramuscular use 20035000), which is what an IDMP / EU ePI feed or a FHIR
    Dosage.route coding with system EDQM sends. Vigil reads the EDQM term text ('Intravenous
    use') but not its code: ceftriaxone 2 g by 20045000 raises only 'route-not-recognised'
    for the data manager, and the medical monitor hears nothing of an IV antibiotic (serious
    infection) or a 15 mg prednisone dose. Expected: the code is read like the term."""
    _raises(_med(**med, route=route), expected)


# -- frequencies -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("freq", "dose"),
    [("Q1D", 15), ("Q2D", 30), ("2ID", 7.5), ("3ID", 5)],
)
def test_hl7_table_0335_repeat_patterns_are_read(freq: str, dose: float) -> None:
    """HL7 v2.5.1 table 0335 (repeat pattern) defines Q<integer>D (every <integer> days)
    and <integer>ID (<integer> times a day) next to BID/TID/QID; a pharmacy system sending
    RXE/TQ1 uses exactly these. Prednisone 15 mg Q1D, 30 mg Q2D (15 mg/day), 7.5 mg 2ID and
    5 mg 3ID are all 15 mg/day, above the protocol's 10 mg/day, yet Vigil answers only
    'dose-not-convertible' (a data-quality event no person is sent). Expected: the steroid
    limit signal, as for BID and QOD."""
    _raises(_med(drug="Prednisone", dose=dose, freq=freq), STEROID)


@pytest.mark.parametrize(
    ("freq", "dose"),
    [("每8小时一次", 4), ("每12小时一次", 7.5), ("每6小时1次", 3)],
)
def test_chinese_every_n_hours_is_read(freq: str, dose: float) -> None:
    """Issue 15 item 10: Chinese frequency forms. '每8小时一次' (once every 8 hours) is the
    Chinese for q8h and is printed on Chinese hospital orders as often as 'q8h'; Vigil reads
    '每日两次' and 'every 8 hours' but not '每N小时一次', so prednisone 4 mg 每8小时一次
    (12 mg/day) raises only 'dose-not-convertible'. Expected: the steroid limit signal."""
    _raises(_med(drug="Prednisone", dose=dose, freq=freq), STEROID)


@pytest.mark.parametrize("freq", ["st", "立即", "临时"])
def test_chinese_stat_orders_are_a_single_dose(freq: str) -> None:
    """Chinese inpatient orders mark a one-off dose 'st' (statim), '立即' (at once) or
    '临时' (a temporary, single order) where English systems write STAT or once, which
    Vigil reads. A methylprednisolone 500 mg IV pulse 'st' is 625 mg prednisone that day;
    Vigil raises only 'dose-not-convertible'. Expected: the steroid limit signal."""
    _raises(_med(drug="Methylprednisolone", dose=500, freq=freq, route="静滴"), STEROID)


def test_route_and_frequency_in_one_field() -> None:
    """EHR sigs put route and frequency together ('po bid'); the brief's own example.
    Prednisone 7.5 mg 'po bid' is 15 mg/day. Vigil raises 'dose-not-convertible' only.
    Expected: the frequency part (BID) is read and the steroid limit signal raised."""
    _raises(_med(drug="Prednisone", dose=7.5, freq="po bid"), STEROID)


# -- dose units --------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", ["mg/d", "mg/day"])
def test_a_daily_dose_unit_is_read(unit: str) -> None:
    """UCUM 'mg/d' (and 'mg/day') is how many pharmacy and EDC systems state a daily dose
    (FHIR Dosage.maxDosePerPeriod, CDISC CMDOSU). Prednisone 15 mg/d is 15 mg/day whatever
    the frequency says; Vigil answers 'dose-not-convertible'. Expected: the steroid limit."""
    _raises(_med(drug="Prednisone", dose=15, unit=unit, freq="QD"), STEROID)


def test_a_weight_based_dose_uses_the_subjects_weight() -> None:
    """Lupus flares are treated with methylprednisolone 1 mg/kg IV; a site records '1 mg/kg'.
    The subject weighs 60 kg (enrolment), so the dose is 60 mg methylprednisolone = 75 mg
    prednisone. Vigil has the weight (it uses it for hydroxychloroquine per kg) but answers
    'dose-not-convertible'. Expected: the steroid limit signal."""
    _raises(_med(drug="Methylprednisolone", dose=1, unit="mg/kg", route="IV"), STEROID)


# -- drug names: silent misses -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("drug", "dose"),
    [
        ("Prednison", 15),
        ("Prednisolon", 15),
        ("Methylprednisolon", 16),
        ("Dexamethason", 4),
        ("Hydrocortison", 100),
        ("Predisone", 15),
    ],
)
def test_corticosteroid_spellings_are_not_silently_dropped(drug: str, dose: float) -> None:
    """Issue 15 item 10 (drug names, misspellings). 'Prednison', 'Prednisolon',
    'Methylprednisolon', 'Dexamethason', 'Hydrocortison' are the INN as written in German,
    Dutch and the Nordic languages (and what many European package leaflets print);
    'Predisone' is the commonest typing error. Each dose here is above 10 mg/day
    prednisone-equivalent, and Vigil says NOTHING: no signal and no data-quality event.
    Expected: the steroid limit signal (or at the very least an event naming the drug)."""
    _raises(_med(drug=drug, dose=dose), STEROID)


@pytest.mark.parametrize(
    ("drug", "dose", "unit"),
    [
        ("Meronem", 1, "g"),  # meropenem (J01DH02), brand
        ("泰能", 1, "g"),  # Tienam, imipenem/cilastatin (J01DH51), China brand
        ("舒普深", 3, "g"),  # Sulperazon, cefoperazone/sulbactam (J01DD62), China brand
        ("可乐必妥", 0.5, "g"),  # Cravit, levofloxacin (J01MA12), China brand
        ("Remdesivir", 200, "mg"),  # J05AB16, intravenous only
        ("瑞德西韦", 200, "mg"),  # remdesivir
        ("帕拉米韦氯化钠注射液", 300, "mg"),  # peramivir (J05AH03), intravenous only
        ("Zanamivir", 600, "mg"),  # J05AH01, IV form
        ("Cidofovir", 375, "mg"),  # J05AB12, intravenous only
        ("Isavuconazole", 200, "mg"),  # J02AC05
        ("Anidulafungin", 100, "mg"),  # J02AX06, intravenous only
    ],
)
def test_intravenous_anti_infectives_are_recognised(drug: str, dose: float, unit: str) -> None:
    """The serious-infection rule claims J01, J02, J04 and J05 (antibacterials, antimycotics,
    antimycobacterials, antivirals for systemic use) by ATC, name table or WHO INN stem. A
    site sends the name only (no ATC). These are intravenous anti-infectives given for
    serious infection in an immunosuppressed lupus subject: carbapenems and fluoroquinolones
    by their Chinese brands, IV antivirals (remdesivir, peramivir, zanamivir, cidofovir:
    WHO INN stem -vir), IV antifungals (-conazole, -fungin). Vigil raises nothing and no
    data-quality event. Expected: the IV anti-infective (serious infection) signal."""
    _raises(_med(drug=drug, dose=dose, unit=unit, route="IV"), IV_ANTI_INFECTIVE)


@pytest.mark.parametrize(
    ("drug", "extra"),
    [
        ("Ocrevus", {}),  # ocrelizumab, anti-CD20
        ("Gazyva", {}),  # obinutuzumab, anti-CD20
        ("汉利康", {}),  # HLX01, Henlius rituximab biosimilar approved in China (2019)
        ("Humira", {}),  # adalimumab
        ("Prolia", {}),  # denosumab
        ("Actemra", {"atc": "L04AC07"}),  # tocilizumab, with its ATC code
        ("Atacicept", {}),  # TACI-Fc B-cell therapy, same class as telitacicept
    ],
)
def test_prohibited_biologics_by_brand_or_class(drug: str, extra: dict[str, Any]) -> None:
    """Protocol (issue 15): rituximab or ANY other monoclonal antibody, and other B-cell
    therapies, are prohibited. Sites write brand names: Ocrevus and Gazyva are anti-CD20
    antibodies like rituximab; 汉利康 is a rituximab biosimilar sold at Beijing hospitals;
    Humira, Prolia and Actemra (tocilizumab, sent with ATC L04AC07) are monoclonal
    antibodies; atacicept is a TACI-Fc B-cell therapy like telitacicept. Vigil matches the
    INN stem -mab only, so each is silent (no signal, no data-quality event). Expected:
    the prohibited-biologic signal."""
    _raises(_med(drug=drug, dose=500, route="IV", **extra), PROHIBITED_BIOLOGIC)


def test_ctx_is_cyclophosphamide() -> None:
    """'CTX' is how Chinese rheumatology orders and notes name cyclophosphamide (the NIH /
    Euro-Lupus 'CTX pulse'); 'CTX 0.4 g 静滴' is an IV cyclophosphamide pulse, prohibited by
    the protocol. Vigil is silent. Expected: the prohibited IV cyclophosphamide signal."""
    _raises(_med(drug="CTX", dose=0.4, unit="g", route="静滴"), PROHIBITED_CYCLOPHOSPHAMIDE)


@pytest.mark.parametrize(
    "drug",
    ["乙型脑炎减毒活疫苗", "带状疱疹减毒活疫苗", "Dengvaxia"],
)
def test_live_vaccines_by_chinese_name_or_brand(drug: str) -> None:
    """Live vaccines are prohibited (protocol; belimumab label). Chinese vaccine names say
    'live attenuated' in the name itself (减毒活疫苗): 乙型脑炎减毒活疫苗 is the live SA14-14-2
    Japanese encephalitis vaccine of the Chinese schedule, 带状疱疹减毒活疫苗 the live zoster
    vaccine licensed in China in 2023 (the pack lists both 'japanese encephalitis vaccine
    live' and 'zoster vaccine live'). Dengvaxia is a live dengue vaccine. Vigil is silent.
    Expected: the prohibited live-vaccine signal."""
    _raises(_med(drug=drug, dose=0.5, unit="mL", freq="once", route="皮下注射"), LIVE_VACCINE)


# -- hydroxychloroquine per kg: impossible weights ------------------------------------------------


def test_an_impossible_body_weight_does_not_raise_hydroxychloroquine_per_kg() -> None:
    """Issue 15 item 8: an impossible value never raises a clinical signal. An adult's body
    weight of 6.2 kg (a dropped digit of 62) is not physiological. Hydroxychloroquine
    200 mg/day in this 80 kg subject is 2.5 mg/kg; Vigil divides by 6.2 and raises
    'hydroxychloroquine above 5 mg/kg' (32 mg/kg) to the investigator. Expected: no
    signal from the impossible weight (judge with the enrolment weight) and a data-quality
    issue naming it."""
    described, _ = _run(
        {
            "enrol": {"weight_kg": 80},
            "facts": [
                {"lab": {"loinc": "29463-7", "value": 6.2, "unit": "kg", "at": 5}},
                {"med": {"drug": "Hydroxychloroquine", "dose": 200, "start": 6}},
            ],
        }
    )
    assert HCQ_PER_KG not in described
    assert any(d.startswith("dq ") for d in described), described


def test_an_impossible_body_weight_does_not_hide_a_hydroxychloroquine_overdose() -> None:
    """The other side of item 8: a body weight of 620 kg (a typing error for 62) makes
    hydroxychloroquine 400 mg/day look like 0.65 mg/kg in a 60 kg subject (6.67 mg/kg,
    above the AAO 2016 limit of 5 mg/kg of real body weight). Vigil raises nothing and no
    data-quality event. Expected: the weight is set aside with a data-quality issue and the
    dose judged on the plausible (enrolment) weight: the per-kg finding."""
    _raises(
        {
            "enrol": {"weight_kg": 60},
            "facts": [
                {"lab": {"loinc": "29463-7", "value": 620, "unit": "kg", "at": 5}},
                {"med": {"drug": "Hydroxychloroquine", "dose": 400, "start": 6}},
            ],
        },
        HCQ_PER_KG,
    )


# -- impossible medication times ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "med"),
    [
        ("2099-01-01T00:00:00Z", {"drug": "Rituximab", "dose": 1000, "route": "IV"}),
        ("1975-01-01T00:00:00Z", {"drug": "Ceftriaxone", "dose": 2, "unit": "g", "route": "IV"}),
    ],
    ids=["start-in-2099", "start-before-birth"],
)
def test_a_medication_that_cannot_have_started_then_does_not_alert(
    start: str, med: dict[str, Any]
) -> None:
    """Issue 15 item 11: times that cannot be right are checked against each other and not
    judged as if true. A medication 'started' in 2099, or in 1975 for a subject born
    1980-06-15, cannot be placed; Vigil raises a prohibited-medication or serious-infection
    signal from it and says nothing of the date. Expected: no signal from the impossible
    start, and a data-quality issue naming the date."""
    described, _ = _run(_med(**med, start=start))
    assert not any(d.startswith("raised") for d in described), described
    assert any(d.startswith("dq ") for d in described), described


# -- a single dose is not a daily dose ------------------------------------------------------------


@pytest.mark.parametrize("freq", ["once", "STAT"])
def test_a_single_dose_is_not_counted_every_day_after(freq: str) -> None:
    """'once' / STAT (HL7 table 0335 'Once') is one administration, not a daily regimen. A
    single methylprednisolone 4 mg IV (5 mg prednisone) on day 1, sent without a stop date
    as single doses are, and prednisone 7.5 mg/day from day 20: on day 20 the subject takes
    7.5 mg/day, below the protocol's 10. Vigil keeps counting the day-1 dose on every day
    after it and raises 'corticosteroid above 10 mg/day' with 'daily_dose_mg 12.5' and
    'methylprednisolone 4 mg ONCE' among the active medications three weeks later: a false
    protocol alert. Expected: no signal (the single dose counts on its own day only)."""
    described, _ = _run(
        {
            "facts": [
                {"med": {"id": "M1", "drug": "Methylprednisolone", "dose": 4, "freq": freq,
                         "route": "IV", "start": 1}},
                {"med": {"id": "M2", "drug": "Prednisone", "dose": 7.5, "start": 20}},
            ]
        }
    )  # fmt: skip
    assert STEROID not in described, described


def test_a_single_pulse_does_not_leave_the_steroid_signal_open_for_ever() -> None:
    """A methylprednisolone 500 mg IV pulse given once on day 1 rightly raises the steroid
    signal. From day 2 the subject takes only prednisone 5 mg/day (below the limit), but
    the signal is never resolved: Vigil treats the single pulse as 500 mg every day, so
    the medical monitor's open signal, and any later dose judgement, rests on a dose that
    is not being taken. Expected: the signal resolves once the pulse's day has passed and
    the day's total is 5 mg."""
    described, _ = _run(
        {
            "facts": [
                {"med": {"id": "M1", "drug": "Methylprednisolone", "dose": 500, "freq": "once",
                         "route": "IV", "start": 1}},
                {"med": {"id": "M2", "drug": "Prednisone", "dose": 5, "start": 4}},
            ]
        }
    )  # fmt: skip
    assert described == [STEROID, "resolved steroid-prednisone-equivalent-gt-10"], described


def test_a_weekly_prednisone_pulse_is_above_10_mg_on_the_day_it_is_taken() -> None:
    """Prednisone 60 mg once weekly (QW) is 60 mg on the day it is taken. The protocol's
    exclusion is 'prednisone (or equivalent) > 10 mg/day', and the pack's stated policy
    where the text is open is the more alerting reading. Vigil averages the weekly dose over
    seven days (8.6 mg/day) and raises nothing, while dexamethasone 20 mg QW (19 mg/day
    averaged) does fire: a weekly steroid pulse below 70 mg prednisone is invisible.
    Expected: the steroid limit signal for the day of the pulse."""
    _raises(_med(drug="Prednisone", dose=60, freq="QW"), STEROID)


def test_a_missing_frequency_is_not_silently_taken_as_once_daily() -> None:
    """The JSON endpoint accepts a concomitant medication with ``frequency: null`` (202).
    Prednisone 7.5 mg with no frequency may be 7.5 mg/day or, as often for this dose,
    7.5 mg twice daily (15 mg/day, above the limit). Vigil silently takes it as once daily:
    no signal and no data-quality event, while an empty-string frequency does raise
    'dose-not-convertible'. Issue 15 item 10: what cannot be read raises a data-quality
    issue that names it. Expected: 'dose-not-convertible' (frequency missing)."""
    described, _ = _run(_med(drug="Prednisone", dose=7.5, freq=None))
    assert "dq dose-not-convertible" in described, described
