"""Signals and data-quality issues made of a medication name the drug by the rule's name
for what it matched, and its dose unit, frequency and route in Vigil's spelling or a fixed
phrase: never the site's text, which may carry a name or a phone number."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from services.notifier.domain.messages import content_for_signal, render
from services.safety_rules.domain.conditions.medication_words import (
    DOSE_UNIT_NOT_RECOGNISED,
    FREQUENCY_NOT_RECOGNISED,
    ROUTE_NOT_RECOGNISED,
    known_frequency,
    per_day,
    shown_dose_unit,
    shown_frequency,
    shown_route,
)
from services.safety_rules.domain.rule_pack import load_rule_packs
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
    [(None, "QD"), ("bid", "BID"), ("Twice  Daily.", "twice daily"), ("q.d.", "QD")],
)
def test_a_frequency_vigil_recognises_is_shown_in_its_spelling(
    sent: str | None, shown: str
) -> None:
    assert known_frequency(sent) == shown
    assert shown_frequency(sent) == shown


def test_any_other_frequency_is_a_fixed_phrase_and_no_dose() -> None:
    assert shown_frequency(f"as told by Dr {NAME}") == FREQUENCY_NOT_RECOGNISED
    assert per_day(f"as told by Dr {NAME}") is None
    assert per_day("BID") == Decimal(2)


def test_dose_units_and_routes_are_shown_only_in_vigil_s_spelling() -> None:
    assert shown_dose_unit("MCG") == "mcg"
    assert shown_dose_unit("Marrowfield") == DOSE_UNIT_NOT_RECOGNISED
    assert shown_route("Oral") == "oral"
    assert shown_route("PO", ("oral", "po")) == "po"
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
        assert signal.computed_values["active_medications"] == "prednisone 20 mg QD po"
        dumped = signal.model_dump_json()
        assert "Marrowfield" not in dumped
        assert "555-0199" not in dumped
        for channel in ("email", "webhook"):
            message = render(
                content_for_signal(signal), channel, link="https://x/a", message_id="<m>"
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
