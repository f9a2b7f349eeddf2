"""Signed assessments on the in-memory unit of work (the twins of
tests/integration/test_workspace_assessment.py, which runs them on PostgreSQL behind the
page): what a signature is bound to, and that it is the acknowledgement."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from services.notifier import handlers
from services.notifier.adapters.in_memory import InMemoryNotifierUnitOfWork
from services.notifier.domain.signature import LoggedFact, facts_digest
from services.safety_rules.adapters.undelivered import UndeliveredSignals
from shared.events import Envelope, wrap
from shared.eventstore import InMemoryEventStore, NewEvent
from tests.support.notifier import ManualClock, context, resolved, roster
from tests.support.notifier import reopened as reopening
from tests.support.notifier_in_memory import plan, recipients, store_for
from tests.support.signatures import signal_on_result


async def stored(store: InMemoryNotifierUnitOfWork, *envelopes: Envelope) -> None:
    async with store:
        store.append(list(envelopes))


async def sign(
    store: InMemoryNotifierUnitOfWork, ctx: handlers.NotifierContext, signal_id: uuid.UUID
) -> handlers.Signed:
    return await handlers.sign(
        store,
        signal_id,
        person_id="pi1",
        meaning="clinically-significant",
        comment="",
        confirmed_by="password",
        context=ctx,
    )


def test_the_facts_digest_is_the_sha256_of_the_stored_hashes_in_log_order_each_once() -> None:
    first, second = (
        LoggedFact(uuid.uuid4(), position, bytes([position]) * 32, None)  # type: ignore[arg-type]
        for position in (3, 7)
    )
    expected = hashlib.sha256(first.hash + second.hash).hexdigest()
    assert facts_digest([second, first, second]) == f"sha256:{expected}"
    assert facts_digest([first]) != facts_digest([second])


async def test_a_signature_is_the_acknowledgement_no_escalation_follows() -> None:
    clock = ManualClock()
    ctx = context(roster(), clock)
    store, facts = store_for(ctx), signal_on_result("S1", grade=3)
    await stored(store, *facts.envelopes)
    await plan(store, ctx, facts.signal)
    signed = await sign(store, ctx, facts.signal_id)
    assert signed.new
    assert signed.event.input_event_ids == (facts.result.id,)
    clock.advance(days=2)
    assert await handlers.escalate_due(store, ctx) == 0
    assert recipients(store, "escalation-1") == []
    again = await sign(store, ctx, facts.signal_id)
    assert (again.new, again.event_id) == (False, signed.event_id)


async def test_a_reopening_sets_the_signature_aside_and_the_clock_runs_again() -> None:
    clock = ManualClock()
    ctx = context(roster(), clock)
    store, facts = store_for(ctx), signal_on_result("S1", grade=3)
    await stored(store, *facts.envelopes)
    await plan(store, ctx, facts.signal)
    first = await sign(store, ctx, facts.signal_id)
    gone = resolved(facts.signal, clock, "back in range")
    back = reopening(facts.signal, clock)
    await stored(store, gone, back)
    await plan(store, ctx, gone, back)
    clock.advance(hours=5)
    assert await handlers.escalate_due(store, ctx) == 1
    anew = await sign(store, ctx, facts.signal_id)
    assert anew.new
    assert anew.event_id != first.event_id


async def test_a_resolved_signal_cannot_be_signed() -> None:
    clock = ManualClock()
    ctx = context(roster(), clock)
    store, facts = store_for(ctx), signal_on_result("S1")
    await stored(store, *facts.envelopes)
    await plan(store, ctx, facts.signal)
    gone = resolved(facts.signal, clock, "back in range")
    await stored(store, gone)
    await plan(store, ctx, gone)
    with pytest.raises(handlers.SignalClosed, match="resolved"):
        await sign(store, ctx, facts.signal_id)


async def test_only_a_person_who_may_acknowledge_the_sites_signals_can_sign() -> None:
    ctx = context(roster())
    store, facts = store_for(ctx), signal_on_result("S1")
    await stored(store, *facts.envelopes)
    await plan(store, ctx, facts.signal)
    with pytest.raises(handlers.NotOnRoster):
        await handlers.sign(
            store,
            facts.signal_id,
            person_id="pi2",
            meaning="clinically-significant",
            comment="",
            confirmed_by="password",
            context=ctx,
        )
    with pytest.raises(handlers.UnknownSignal):
        await sign(store, ctx, uuid.uuid4())


async def test_the_watchdog_counts_a_signed_signal_as_told() -> None:
    log, facts = InMemoryEventStore(), signal_on_result("S1")
    await log.append([NewEvent(e) for e in facts.envelopes])
    watchdog = UndeliveredSignals()
    assert [s.signal_id for s in await watchdog.refresh_from(log)] == [facts.signal_id]
    ctx = context(roster())
    store = store_for(ctx)
    await stored(store, *facts.envelopes)
    await plan(store, ctx, facts.signal)
    signed = await sign(store, ctx, facts.signal_id)
    signature = wrap(signed.event, source="/vigil/notifier", event_id=signed.event_id)
    await log.append([NewEvent(signature)])
    assert await watchdog.refresh_from(log) == []
