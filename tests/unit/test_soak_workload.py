"""The soak's workload: its expected signals are what the real rule engine raises."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime

from services.safety_rules.adapters.rule_pack_files import load_rule_packs
from shared.analytes import normalise_lab_result
from shared.events import (
    AdverseEventReported,
    EventPayload,
    LabResultReported,
    MedicationRecorded,
    SafetySignalRaised,
    SubjectEnrolled,
)
from soak.config import short
from soak.messages import poison_fact_keys, render
from soak.workload import STUDY, AdverseEvent, Enrolment, Fact, Lab, Medication, generate
from tests.support.rules_harness import InMemoryRulesStore, run_batches
from tests.support.services import REPO

PACK = load_rule_packs(REPO / "studies")[STUDY]


def payload_of(fact: Fact) -> EventPayload:
    """The event ingest makes of a workload fact (normalised, as ingest does)."""
    if isinstance(fact, Enrolment):
        s = fact.subject
        return SubjectEnrolled(
            study_id=STUDY,
            subject_id=s.id,
            site_id=s.site,
            sex=s.sex,
            birth_date=s.birth_date,
            weight_kg=s.weight_kg,
            day0=datetime(2026, 3, 2, tzinfo=UTC).date(),
        )
    if isinstance(fact, Lab):
        lab = LabResultReported(
            study_id=STUDY,
            subject_id=fact.subject,
            loinc_code=fact.analyte.loinc,
            value=fact.value,
            unit=fact.analyte.unit,
            reference_low=fact.analyte.low,
            reference_high=fact.analyte.high,
            collected_at=fact.collected_at,
            source_message_id=fact.key,
        )
        normalised, problem = normalise_lab_result(lab)
        assert problem is None, problem
        return normalised
    if isinstance(fact, AdverseEvent):
        return AdverseEventReported(
            study_id=STUDY,
            subject_id=fact.subject,
            ae_id=fact.key,
            term=fact.term,
            onset=fact.onset,
            serious=fact.serious,
            seriousness_criteria=("hospitalisation",) if fact.serious else (),
            source_message_id=fact.key,
        )
    assert isinstance(fact, Medication)
    return MedicationRecorded(
        study_id=STUDY,
        subject_id=fact.subject,
        category=fact.category,
        medication_id=fact.key,
        drug=fact.drug,
        dose=fact.dose,
        dose_unit=fact.unit,
        route=fact.route,
        frequency=fact.frequency,
        start=fact.start,
        source_message_id=fact.key,
    )


def test_the_scripted_findings_raise_exactly_the_expected_signals_and_the_background_none() -> None:
    workload = generate(replace(short(), poison_kinds=()))
    items = [*workload.enrolments, *workload.stream]
    payloads = [payload_of(fact) for item in items for fact in item.facts]
    batches = [payloads[n : n + 200] for n in range(0, len(payloads), 200)]

    outcomes = asyncio.run(run_batches(InMemoryRulesStore(), batches, PACK))

    raised = Counter(
        (p.subject_id, p.rule_id)
        for outcome in outcomes
        for envelope in outcome.signals
        if isinstance(p := envelope.payload(), SafetySignalRaised)
    )
    assert set(raised) == {(e.subject, e.rule_id) for e in workload.expected}
    assert set(raised.values()) == {1}
    assert len(workload.expected) >= 8  # every kind of finding is there


def test_the_same_seed_gives_the_same_stream_and_another_seed_another() -> None:
    first, again = generate(short()), generate(short())
    other = generate(replace(short(), seed=short().seed + 1))

    assert [render(i) for i in first.stream] == [render(i) for i in again.stream]
    assert [render(i) for i in first.stream] != [render(i) for i in other.stream]


def test_the_stream_holds_every_channel_and_every_poison_kind() -> None:
    config = short()
    workload = generate(config)

    assert {i.channel for i in workload.stream} == {"json", "fhir", "mllp"}
    assert {i.poison for i in workload.stream if i.poison} == set(config.poison_kinds)
    assert workload.fact_count >= config.events
    for item in workload.stream:
        if item.poison is None:
            continue
        assert not item.facts
        assert poison_fact_keys(item)  # where it would be found, had it been taken
