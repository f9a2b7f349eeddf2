"""Signals and data-quality issues made of a medication name the drug by the rule's name
for what it matched, and its dose unit, frequency and route in Vigil's spelling or a fixed
phrase: never the site's text, which may carry a name or a phone number."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from pydantic import ValidationError

from services.notifier.domain.links import MessageLink
from services.notifier.domain.messages import content_for_signal, render
from services.safety_rules.adapters.rule_pack_files import load_rule_packs
from services.safety_rules.domain.conditions.drug_names import identify, names_in
from services.safety_rules.domain.conditions.medication_words import (
    DOSE_UNIT_NOT_RECOGNISED,
    FREQUENCY_NOT_RECOGNISED,
    ROUTE_NOT_RECOGNISED,
    known_frequency,
    mg_per_unit,
    per_day,
    read_dose_unit,
    route_of,
    shown_dose_unit,
    shown_frequency,
    shown_route,
)
from services.safety_rules.domain.event_rule_kinds import MedicationRule
from shared.analytes import codes_of
from shared.events import DataQualityIssueRaised, SafetySignalRaised
from tests.support.rules_harness import InMemoryRulesStore, fact, run_batches
from tests.support.services import REPO

PACK = load_rule_packs(REPO / "studies")["NCT05262686"]
NAME = "Quentin Marrowfield"
STEROID = "steroid-prednisone-equivalent-gt-10"


def derived(med: dict[str, Any]) -> tuple[list[SafetySignalRaised], list[DataQualityIssueRaised]]:
    """What the study's rules derive from one enrolled subject's medication."""
    store = InMemoryRulesStore()
    batches = [[fact({"enrol": {}}, "01-003")], [fact({"med": med}, "01-003")]]
    outcomes = asyncio.run(run_batches(store, batches, PACK))
    payloads = [e.payload() for o in outcomes for e in (*o.signals, *o.data_quality)]
    return (
        [p for p in payloads if isinstance(p, SafetySignalRaised)],
        [p for p in payloads if isinstance(p, DataQualityIssueRaised)],
    )


@pytest.mark.parametrize(
    ("sent", "shown"),
    [("bid", "BID"), ("Twice  Daily.", "twice daily"), ("q.d.", "QD"), ("STAT", "ONCE")],
)
def test_a_frequency_vigil_recognises_is_shown_in_its_spelling(
    sent: str | None, shown: str
) -> None:
    assert known_frequency(sent) == shown
    assert shown_frequency(sent) == shown


def test_a_missing_frequency_is_not_once_daily() -> None:
    """Issue 15 (outside tests): no frequency is not read as once daily (7.5 mg may be
    twice a day): a dose rule cannot sum it, and it is shown as not given."""
    assert per_day(None) is None
    assert known_frequency(None) is None
    assert shown_frequency(None) == "(frequency not given)"


def test_any_other_frequency_is_a_fixed_phrase_and_no_dose() -> None:
    assert shown_frequency(f"as told by Dr {NAME}") == FREQUENCY_NOT_RECOGNISED
    assert per_day(f"as told by Dr {NAME}") is None
    assert per_day("BID") == Decimal(2)


def test_dose_units_and_routes_are_shown_only_in_vigil_s_spelling() -> None:
    assert shown_dose_unit("MCG") == "mcg"
    assert shown_dose_unit("Marrowfield") == DOSE_UNIT_NOT_RECOGNISED
    assert shown_route("Oral") == "oral"
    assert shown_route("PO") == "oral"
    assert shown_route(f"given by {NAME}") == ROUTE_NOT_RECOGNISED


def test_a_steroid_signal_names_the_rule_s_drug_not_the_text_as_sent() -> None:
    signals, issues = derived(
        {"drug": f"prednisone - for Mrs {NAME}, call 555-0199", "dose": 20, "route": "PO"}
    )
    raised = [s for s in signals if s.rule_id == STEROID]
    assert raised, "20 mg/day prednisone raises the steroid signal"
    assert issues == []
    for signal in raised:
        assert signal.analyte == "prednisone"
        assert signal.computed_values["active_medications"] == "prednisone 20 mg QD oral"
        dumped = signal.model_dump_json()
        assert "Marrowfield" not in dumped
        assert "555-0199" not in dumped
        for channel in ("email", "webhook"):
            message = render(
                content_for_signal(signal),
                channel,
                link=MessageLink("https://x/a"),
                message_id="<m>",
            )
            assert "Marrowfield" not in f"{message.subject}{message.text}{message.html}"


def test_a_drug_known_by_its_atc_code_is_named_by_the_rule() -> None:
    signals, _ = derived({"drug": f"tablets for {NAME}", "atc": "H02AB06", "dose": 20})
    assert [s.analyte for s in signals if s.rule_id == STEROID] == ["prednisolone"]


def test_a_dose_that_cannot_be_summed_names_the_fields_not_their_values() -> None:
    _, issues = derived(
        {"drug": "prednisone", "dose": 20, "unit": "tabs", "freq": f"as told by Dr {NAME}"}
    )
    details = [i.detail for i in issues if i.issue == "dose-not-convertible"]
    assert details == [
        f"rule {STEROID}: prednisone cannot be turned into mg/day: "
        "dose unit not recognised, frequency not recognised"
    ]
    assert all("Marrowfield" not in i.model_dump_json() for i in issues)


# -- the word tables ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "route"),
    [
        ("oral", "oral"),
        ("P.O.", "oral"),
        ("po tab", "oral"),
        ("Oral tablet", "oral"),
        ("口服", "oral"),
        ("26643006", "oral"),
        ("http://snomed.info/sct|26643006", "oral"),
        ("ivgtt", "intravenous"),
        ("i.v.", "intravenous"),
        ("IV drip", "intravenous"),
        ("Intravenous infusion", "intravenous"),
        ("静脉滴注", "intravenous"),
        ("静滴", "intravenous"),
        ("静推", "intravenous"),
        ("静脉注射", "intravenous"),
        ("47625008", "intravenous"),
        ("IM", "intramuscular"),
        ("肌注", "intramuscular"),
        ("78421000", "intramuscular"),
        ("SC", "subcutaneous"),
        ("皮下注射", "subcutaneous"),
        ("34206005", "subcutaneous"),
        ("外用", "topical"),
        ("AP", "topical"),
        ("吸入", "inhalation"),
        ("iv gtt", "intravenous"),
        ("SL", "sublingual"),
        ("TD", "transdermal"),
        ("NS", "nasal"),
        ("PR", "rectal"),
        ("IT", "intrathecal"),
    ],
)
def test_a_route_is_read_into_its_canonical_route(sent: str, route: str) -> None:
    assert route_of(sent) == route


@pytest.mark.parametrize(
    "sent",
    ["as per protocol", "injection", "oral or iv", "per", f"by {NAME}", "", "not oral", "ih"],
)
def test_a_route_vigil_cannot_tell_is_none(sent: str) -> None:
    assert route_of(sent) is None


@pytest.mark.parametrize(
    ("sent", "times"),
    [
        ("BD", 2),
        ("b.i.d.", 2),
        ("q12h", 2),
        ("1-0-1", 2),
        ("1-1-1", 3),
        ("2-0-1", 3),
        ("1-0-0-1", 2),
        ("每日一次", 1),
        ("每日两次", 2),
        ("一日两次", 2),
        ("每日三次", 3),
        ("每天3次", 3),
        ("q.d.", 1),
        ("qAM", 1),
        ("every 8 hours", 3),
        ("q8h", 3),
        ("3x daily", 3),
        ("x2/day", 2),
        ("TDS", 3),
        ("隔日一次", Fraction(1, 2)),
        ("QW", Fraction(1, 7)),
        # HL7 v2.5.1 table 0335 repeat patterns
        ("Q1D", 1),
        ("Q2D", Fraction(1, 2)),
        ("2ID", 2),
        ("3ID", 3),
        ("Q2W", Fraction(1, 14)),
        ("Q3W", Fraction(1, 21)),
        # Chinese every n hours / days, a single order, route and frequency in one field
        ("每8小时一次", 3),
        ("每12小时一次", 2),
        ("每6小时1次", 4),
        ("每2日一次", Fraction(1, 2)),
        ("st", 1),
        ("立即", 1),
        ("临时", 1),
        ("po bid", 2),
        ("bid po", 2),
    ],
)
def test_a_frequency_is_read_into_administrations_a_day(sent: str, times: Fraction) -> None:
    assert per_day(sent) == times
    assert known_frequency(sent) is not None


@pytest.mark.parametrize("sent", ["prn", "as needed", "0-0-0", "q0h", "每日若干次"])
def test_a_frequency_that_says_no_daily_count_is_none(sent: str) -> None:
    assert per_day(sent) is None


@pytest.mark.parametrize(
    ("sent", "mg"),
    [
        ("mg", 1),
        ("MG", 1),
        ("milligrams", 1),
        ("毫克", 1),
        ("g", 1000),
        ("克", 1000),
        ("\u00b5g", Fraction(1, 1000)),  # micro sign
        ("\u03bcg", Fraction(1, 1000)),  # Greek mu
        ("mcg", Fraction(1, 1000)),
        ("ug", Fraction(1, 1000)),
        ("微克", Fraction(1, 1000)),
    ],
)
def test_a_dose_unit_is_read_into_mg(sent: str, mg: Fraction) -> None:
    assert mg_per_unit(sent) == mg


def test_a_dose_unit_that_is_not_a_mass_is_none() -> None:
    assert mg_per_unit("mL") is None
    assert mg_per_unit("tabs") is None


@pytest.mark.parametrize(
    ("sent", "names"),
    [
        ("泼尼松", ("prednisone",)),
        ("醋酸泼尼松片", ("prednisone",)),
        ("泼尼松龙", ("prednisolone",)),
        ("甲泼尼龙琥珀酸钠", ("methylprednisolone",)),
        ("甲强龙", ("methylprednisolone",)),
        ("Solu-Medrol", ("methylprednisolone",)),
        ("Decadron", ("dexamethasone",)),
        ("Kenalog-40", ("triamcinolone",)),
        ("Hydrocortisone 1% cream", ("hydrocortisone",)),
        ("Cortisone acetate", ("cortisone",)),
        ("硫酸羟氯喹片", ("hydroxychloroquine",)),
        ("Plaquenil", ("hydroxychloroquine",)),
        ("利妥昔单抗", ("rituximab",)),
        ("Cefoperazone-Sulbactam", ("cefoperazone", "sulbactam")),
        ("piperacillin/tazobactam", ("piperacillin-tazobactam",)),
        ("amoxicillin + clavulanic acid", ("amoxicillin", "clavulanic acid")),
        ("注射用头孢哌酮钠舒巴坦钠", ("cefoperazone", "sulbactam")),
        ("Benzylpenicillin sodium", ("benzylpenicillin",)),
        ("Shingrix", ()),
        (f"tablets for {NAME}", ()),
    ],
)
def test_a_drug_is_known_by_its_generic_brand_or_chinese_name(
    sent: str, names: tuple[str, ...]
) -> None:
    assert names_in(sent) == names


def test_a_drug_s_atc_codes_come_with_it_and_with_the_code_sent() -> None:
    assert identify("Prednisone", None).atc == ("H02AB07",)
    assert identify("pharmacy item", "j01xx11").atc == ("J01XX11",)
    assert identify("pharmacy item", "RxNorm 12345").atc == ()


def _rule(**changes: Any) -> MedicationRule:
    spec = {
        "id": "r",
        "title": "Test",
        "source": "test",
        "kind": "medication",
        "criterion": "daily-dose",
        "threshold": 10,
        "drugs": [{"name": "dexamethasone", "factor": "20/3"}],
        "routes": ["oral"],
    }
    return MedicationRule.model_validate({**spec, **changes})


def test_an_equivalence_factor_is_an_exact_fraction() -> None:
    assert _rule().drugs[0].factor == Fraction(20, 3)
    assert Fraction("1.5") * _rule().drugs[0].factor == 10


def test_a_rule_route_must_be_a_canonical_route() -> None:
    with pytest.raises(ValidationError, match="not canonical routes"):
        _rule(routes=["oral", "po"])


def test_a_rule_drug_vigil_does_not_know_needs_its_codes_or_names() -> None:
    with pytest.raises(ValidationError, match="not in Vigil's drug table"):
        _rule(drugs=[{"name": "newsteroidone"}])
    assert _rule(drugs=[{"name": "newsteroidone", "atc": ["H02AB99"]}]).drugs[0].name


def test_a_name_stem_is_written_with_its_hyphens() -> None:
    with pytest.raises(ValidationError, match="name stems"):
        _rule(criterion="any", name_stems=["mab"])


def test_a_route_vigil_cannot_read_names_the_field_and_rule_not_the_text() -> None:
    signals, issues = derived({"drug": "prednisone", "dose": 20, "route": f"as {NAME} said"})
    assert signals == []
    assert [(i.issue, i.rule_id) for i in issues] == [("route-not-recognised", STEROID)]
    assert "route field" in issues[0].detail
    assert "Marrowfield" not in issues[0].model_dump_json()


def test_a_medication_by_a_chinese_name_is_shown_by_vigil_s_name() -> None:
    signals, _ = derived(
        {"drug": "醋酸泼尼松片", "dose": 15, "unit": "毫克", "route": "口服", "freq": "每日一次"}
    )
    raised = [s for s in signals if s.rule_id == STEROID]
    assert [s.computed_values["active_medications"] for s in raised] == [
        "prednisone 15 mg 1x/day oral"
    ]


def test_a_daily_dose_is_stored_as_a_plain_decimal() -> None:
    signals, _ = derived({"drug": "prednisone", "dose": 10, "freq": "BID"})
    raised = [s for s in signals if s.rule_id == STEROID]
    assert [str(s.observed_value) for s in raised] == ["20"]
    assert [s.observed_unit for s in raised] == ["mg/day"]


def test_a_rule_describes_its_condition_in_words() -> None:
    assert _rule().describe() == "daily dose > 10 mg/day"
    two = [{"name": "dexamethasone", "factor": "20/3"}, {"name": "prednisone"}]
    assert _rule(drugs=two, reference_drug="prednisone").describe() == (
        "daily dose prednisone-equivalent > 10 mg/day"
    )
    assert _rule(criterion="route", routes=["intravenous"]).describe() == (
        "test (route: intravenous)"
    )
    assert _rule(criterion="any", routes=[]).describe() == "test (any route)"
    per_kg = _rule(criterion="daily-dose-per-kg", threshold=5)
    assert per_kg.describe() == "daily dose > 5 mg/kg/day"
    # a new weight re-judges it: it reads every body weight code of the catalogue
    assert per_kg.inputs() == ("medication", *codes_of("body weight"))
    assert "29463-7" in per_kg.inputs()


@pytest.mark.parametrize(
    ("sent", "shown", "mg", "per_day", "per_kg"),
    [
        ("mg/d", "mg/d", 1, True, False),
        ("mg/day", "mg/d", 1, True, False),
        ("g/d", "g/d", 1000, True, False),
        ("毫克/日", "mg/d", 1, True, False),
        ("mg/kg", "mg/kg", 1, False, True),
        ("mg/kg/d", "mg/kg/d", 1, True, True),
        ("mg", "mg", 1, False, False),
    ],
)
def test_a_dose_unit_per_day_or_per_kg_is_read(
    sent: str, shown: str, mg: int, per_day: bool, per_kg: bool
) -> None:
    read = read_dose_unit(sent)
    assert read is not None
    assert (read.shown, read.mg, read.per_day, read.per_kg) == (shown, mg, per_day, per_kg)
    assert shown_dose_unit(sent) == shown


def test_a_dose_unit_per_something_else_is_none() -> None:
    assert read_dose_unit("mg/m2") is None
    assert read_dose_unit("mL/kg") is None
