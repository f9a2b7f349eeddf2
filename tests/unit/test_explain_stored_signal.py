"""``vigil rules explain`` on the in-memory event store: the signal, its inputs and what
followed, read through the EventStore port (tests/integration/test_rules_explain.py runs
the command on PostgreSQL)."""

from __future__ import annotations

import functools
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.safety_rules.adapters.rule_pack_files import load_rule_packs
from services.safety_rules.handlers.explain_signal import SignalNotFound, explain_stored_signal
from shared.events import Envelope, LabResultReported, SafetySignalEscalated, wrap
from shared.eventstore import InMemoryEventStore, NewEvent
from tests.support.notifier import STUDY, lifecycle, raised, signal_of
from tests.support.services import REPO

PACKS = functools.partial(load_rule_packs, REPO / "studies")


def lab(subject: str) -> Envelope:
    payload = LabResultReported(
        study_id=STUDY,
        subject_id=subject,
        loinc_code="718-7",
        value=Decimal("8.0"),
        unit="g/dL",
        collected_at=datetime(2026, 6, 1, 9, tzinfo=UTC),
        source_message_id=f"M-{subject}",
    )
    return wrap(payload, source="/test/lab")


async def test_a_signal_is_explained_with_its_inputs_and_what_followed() -> None:
    store = InMemoryEventStore()
    result = lab("E1")
    raising = raised(subject_id="E1", input_event_ids=(result.id,))
    # the rules service raises a signal under its own id
    signal = raising.model_copy(update={"id": signal_of(raising).signal_id})
    escalated = wrap(
        SafetySignalEscalated(
            **lifecycle(signal_of(signal)),
            previous_grade=2,
            grade=3,
            input_event_ids=(result.id,),
            computed_values={},
            collected_at=datetime(2026, 6, 2, tzinfo=UTC),
        ),
        source="/test/rules",
    )
    await store.append([NewEvent(result), NewEvent(signal), NewEvent(escalated)])

    text = await explain_stored_signal(store, signal.id, PACKS)

    assert "position 1: lab result 718-7 = 8 g/dL, status F" in text
    assert "escalated from grade 2 to 3" in text


async def test_an_unknown_signal_is_said_to_be_missing() -> None:
    with pytest.raises(SignalNotFound, match="no safety signal"):
        await explain_stored_signal(InMemoryEventStore(), uuid.uuid4(), PACKS)
