"""The watchdog's view of the log, on the in-memory event store: which urgent signals
nobody has been told about (the same store contract as PostgreSQL's, so no server)."""

from __future__ import annotations

import uuid

from services.safety_rules.adapters.undelivered import UndeliveredSignals
from shared.events import Envelope, SafetySignalRetracted, wrap
from shared.events.notifications import DeliverySucceeded, SignalAcknowledged
from shared.eventstore import InMemoryEventStore, NewEvent
from tests.support.notifier import lifecycle, raised, signal_of


async def put(store: InMemoryEventStore, *envelopes: Envelope) -> None:
    await store.append([NewEvent(envelope) for envelope in envelopes])


def told(signal: Envelope) -> Envelope:
    payload = signal_of(signal)
    return wrap(
        DeliverySucceeded(
            signal_id=payload.signal_id,
            study_id=payload.study_id,
            subject_id=payload.subject_id,
            delivery_id=uuid.uuid4(),
            person_id="pi1",
            channel="email",
            purpose="alert",
            attempt=1,
        ),
        source="/test/notifier",
    )


def acknowledged(signal: Envelope) -> Envelope:
    payload = signal_of(signal)
    return wrap(
        SignalAcknowledged(
            signal_id=payload.signal_id,
            study_id=payload.study_id,
            subject_id=payload.subject_id,
            person_id="pi1",
            role="investigator",
            assessment="not-clinically-significant",
            token_id="t1",
        ),
        source="/test/notifier",
    )


def retracted(signal: Envelope) -> Envelope:
    return wrap(
        SafetySignalRetracted(**lifecycle(signal_of(signal)), reason="source withdrawn"),
        source="/test/rules",
    )


async def test_protocol_threshold_and_serious_signals_wait_until_someone_is_told() -> None:
    store = InMemoryEventStore()
    threshold, serious = raised(), raised(severity="finding", serious=True)
    finding = raised(severity="finding")
    await put(store, threshold, finding, serious)
    signals = UndeliveredSignals(chunk=2)  # two reads: the log is followed by position

    waiting = await signals.refresh_from(store)

    assert [s.signal_id for s in waiting] == [
        signal_of(threshold).signal_id,
        signal_of(serious).signal_id,
    ]
    assert [s.position for s in waiting] == [1, 3]
    assert waiting[0].rule_id == signal_of(threshold).rule_id
    await put(store, told(threshold))
    assert [s.signal_id for s in await signals.refresh_from(store)] == [
        signal_of(serious).signal_id
    ]


async def test_an_acknowledged_or_retracted_signal_waits_no_more() -> None:
    store = InMemoryEventStore()
    first, second, third = raised(), raised(), raised()
    await put(store, first, second, third)
    signals = UndeliveredSignals()
    assert len(await signals.refresh_from(store)) == 3

    await put(store, acknowledged(first), retracted(second))

    assert [s.signal_id for s in await signals.refresh_from(store)] == [signal_of(third).signal_id]
