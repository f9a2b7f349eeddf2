"""Signals, data-quality issues and the messages made of them name an adverse event in
Vigil's words, never by the site's verbatim term, and never copy a result's sender text (its
unit, its analyte as sent, its value as text); a lab alert keeps everything a reader needs."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from services.ingest.domain.json_events import events_for
from services.notifier.domain.links import MessageLink
from services.notifier.domain.messages import (
    MessageContent,
    Rendered,
    content_for_signal,
    render,
)
from services.safety_rules.adapters.rule_pack_files import load_rule_packs
from shared.adverse_event_labels import adverse_event_label
from shared.analytes import UNIT_NOT_RECOGNISED
from shared.events import LabResultReported, SafetySignalRaised, SignalEvent
from tests.support.rules_harness import InMemoryRulesStore, fact, run_batches
from tests.support.services import REPO

PACK = load_rule_packs(REPO / "studies")["NCT05262686"]
TERM = "Fell outside 12 Qxelmstreet Road, taken to hospital by Quentin Marrowfield"
LINK = "https://vigil.example.org/workspace/signals/x"


UNIT = "Quarrington1234"  # a name, sent where a unit goes
TEXT = "Patient Quentin Marrowfield, ward 4"


def derived_for(*facts: Any) -> tuple[list[SafetySignalRaised], list[str]]:
    """The signals the rules raise on ``facts`` (specs or payloads), and every derived
    event (signals and data-quality issues) as JSON."""
    store = InMemoryRulesStore()
    chosen = [f if isinstance(f, LabResultReported) else fact(f, "01-003") for f in facts]
    batches = [[fact({"enrol": {}}, "01-003")], chosen]
    outcomes = asyncio.run(run_batches(store, batches, PACK))
    derived = [e.payload() for o in outcomes for e in (*o.signals, *o.data_quality)]
    events = [e.payload() for o in outcomes for e in o.signals]
    assert all(isinstance(e, SignalEvent) for e in events)
    raised = [e for e in events if isinstance(e, SafetySignalRaised)]
    return raised, [e.model_dump_json() for e in derived]


def signals_for(*specs: dict[str, Any]) -> list[SafetySignalRaised]:
    return derived_for(*specs)[0]


def rendered(signal: SafetySignalRaised) -> str:
    """Everything an e-mail and a webhook of this signal carry, as one text."""
    content = content_for_signal(signal)
    parts = []
    for channel in ("email", "webhook"):
        message = sent(content, channel)
        parts += [message.subject, message.text, message.html or ""]
    return "\n".join(parts)


def sent(content: MessageContent, channel: str) -> Rendered:
    """The message as a sender renders it when it sends (with the link)."""
    return render(content, channel, link=MessageLink(LINK), message_id="<m@vigil>")


def test_a_serious_adverse_event_signal_carries_no_verbatim_term() -> None:
    ae = {"id": "AE1", "term": TERM, "serious": True, "criteria": ["hospitalisation"]}
    signals = signals_for({"ae": {**ae, "meddra": "10017076"}})
    assert signals, "an SAE raises a signal"
    for signal in signals:
        assert TERM not in signal.model_dump_json()
        assert "Marrowfield" not in signal.model_dump_json()
        assert signal.analyte == "serious adverse event (hospitalisation), MedDRA 10017076"
        text = rendered(signal)
        assert "Marrowfield" not in text
        assert "Qxelmstreet" not in text


def test_the_sae_subject_line_uses_vigil_s_words_and_the_meddra_code() -> None:
    (signal, *_) = signals_for(
        {"ae": {"id": "AE1", "term": TERM, "serious": True, "criteria": ["hospitalisation"]}}
    )
    assert sent(content_for_signal(signal), "email").subject == (
        f"[Vigil] NCT05262686 subject 01-003: serious adverse event (hospitalisation) "
        f"({signal.rule_id})"
    )


def test_a_signal_recorded_with_the_term_is_worded_afresh() -> None:
    """A signal the rules service raised before it stopped copying the term."""
    old = SafetySignalRaised(
        study_id="NCT05262686",
        subject_id="01-003",
        site_id="PKUPH-01",
        signal_id=uuid.UUID(int=9),
        rule_id="sae-any",
        rule_title="Any serious adverse event",
        rule_pack_version="1",
        input_event_ids=(uuid.UUID(int=1),),
        computed_values={"term": TERM, "seriousness": "life-threatening", "ae_id": "AE1"},
        analyte=TERM,
        threshold="any serious adverse event",
        collected_at=datetime(2026, 6, 1, tzinfo=UTC),
        serious=True,
        episode_key="ae:AE1",
    )
    text = rendered(old)
    assert "Marrowfield" not in text
    assert "serious adverse event (life-threatening)" in text


def test_a_lab_alert_still_says_what_a_reader_needs() -> None:
    hb = {"lab": {"loinc": "718-7", "value": "8.6", "unit": "g/dL", "ref": "12-16"}}
    (signal,) = [s for s in signals_for(hb) if s.rule_id == "anaemia-hb-le-9"]
    content = content_for_signal(signal.model_copy(update={"site_id": "PKUPH-01"}))
    email = sent(content, "email")
    assert email.subject == (
        "[Vigil] NCT05262686 subject 01-003: haemoglobin 8.6 g/dL (anaemia-hb-le-9)"
    )
    for needed in ("01-003", "PKUPH-01", "haemoglobin", "8.6 g/dL", "anaemia-hb-le-9", LINK):
        assert needed in email.text
    document = json.loads(sent(content, "webhook").text)
    assert (document["subject_id"], document["value"]) == ("01-003", "8.6 g/dL")


@pytest.mark.parametrize(
    ("arguments", "label"),
    [
        ({"serious": False}, "adverse event"),
        ({"serious": True}, "serious adverse event"),
        (
            {"serious": True, "criteria": ["death", "hospitalisation", "death"]},
            "serious adverse event (death, hospitalisation)",
        ),
        ({"serious": True, "criteria": [TERM]}, "serious adverse event"),
        ({"serious": False, "nyha_class": "III"}, "adverse event, NYHA class III"),
        ({"serious": False, "meddra_code": "10017076"}, "adverse event, MedDRA 10017076"),
        ({"serious": False, "meddra_code": TERM, "nyha_class": TERM}, "adverse event"),
    ],
)
def test_adverse_event_labels_use_only_vigil_s_vocabularies(
    arguments: dict[str, Any], label: str
) -> None:
    assert adverse_event_label(**arguments) == label


def test_a_unit_vigil_does_not_recognise_reaches_no_signal_and_no_message() -> None:
    """ALT at 6 x ULN fires whatever the unit; the alert shows a fixed phrase instead."""
    alt = {"lab": {"loinc": "1742-6", "value": "250", "unit": UNIT, "ref": "0-40"}}
    signals, derived = derived_for(alt)
    assert signals, "ALT at 6 x ULN raises a signal"
    assert not [d for d in derived if "Quarrington" in d]
    for signal in signals:
        text = rendered(signal)
        assert "Quarrington" not in text
    (shown,) = [rendered(s) for s in signals if s.observed_unit == UNIT_NOT_RECOGNISED][:1]
    assert f"250 {UNIT_NOT_RECOGNISED}" in shown


def test_a_unit_vigil_recognises_is_shown_in_the_catalogue_s_spelling() -> None:
    hb = {"lab": {"loinc": "718-7", "value": "8.6", "unit": "G/DL", "ref": "12-16"}}
    (signal,) = [s for s in signals_for(hb) if s.rule_id == "anaemia-hb-le-9"]
    assert "8.6 g/dL" in rendered(signal)


def test_a_signal_recorded_with_the_unit_as_sent_shows_the_fixed_phrase() -> None:
    """A signal the rules service raised before it stopped copying the unit."""
    hb = {"lab": {"loinc": "718-7", "value": "8.6", "unit": "g/dL", "ref": "12-16"}}
    (signal,) = [s for s in signals_for(hb) if s.rule_id == "anaemia-hb-le-9"]
    old = signal.model_copy(update={"observed_unit": UNIT})
    text = rendered(old)
    assert "Quarrington" not in text
    assert f"8.6 {UNIT_NOT_RECOGNISED}" in text


def test_a_data_quality_issue_names_the_unit_field_never_its_text() -> None:
    """ingest's issue for a unit it cannot convert, and the rules' issue for a result
    without a reference range, say what is wrong without quoting the unit."""
    hb = fact({"lab": {"loinc": "718-7", "value": "6.0", "unit": UNIT}}, "01-003")
    assert isinstance(hb, LabResultReported)
    (_, issue) = events_for(hb, source="/test", correlation_id=uuid.UUID(int=1), now=None)
    detail = issue.payload().detail  # type: ignore[attr-defined]
    assert "Quarrington" not in detail
    assert "unit Vigil does not recognise" in detail
    alt = {"lab": {"loinc": "1742-6", "value": "250", "unit": UNIT}}  # no reference range
    _, derived = derived_for(alt)
    assert derived, "a missing reference range is a data-quality issue"
    assert not [d for d in derived if "Quarrington" in d]


def test_a_result_s_text_as_sent_reaches_no_signal() -> None:
    """A qualitative or coded result names the test by Vigil's catalogue or its LOINC
    code, and says what was found in Vigil's words."""
    hiv = fact({"lab": {"loinc": "7918-6", "qualitative": "positive", "text": TEXT}}, "01-003")
    nyha = fact({"lab": {"loinc": "88020-3", "text": f"class IV {TEXT}"}}, "01-003")
    named = [
        r.model_copy(update={"analyte_text": TEXT})
        for r in (hiv, nyha)
        if isinstance(r, LabResultReported)
    ]
    signals, derived = derived_for(*named)
    assert {s.rule_id for s in signals} >= {"hiv-antibody-positive"}
    assert len(signals) == 2
    assert not [d for d in derived if "Marrowfield" in d]
    for signal in signals:
        assert "Marrowfield" not in rendered(signal)
