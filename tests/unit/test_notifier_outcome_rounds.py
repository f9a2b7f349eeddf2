"""The delivery worker records the outcomes of sends that end together in one transaction
(one wait for the audit log's append lock), and an outcome whose recording fails is
recorded alone without holding up the others (on the in-memory unit of work)."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

from shared.events import EventPayload
from shared.events.notifications import DeliverySucceeded
from tests.support.notifier import context, raised, roster, signal_of
from tests.support.notifier_in_memory import (
    RecordingSender,
    email_worker,
    plan,
    store_for,
    stream_types,
)


class CountingUnitOfWork:
    """The in-memory unit of work, counting its transactions; recording the success of a
    delivery to ``poisoned`` (a person id) fails as a bug would."""

    def __init__(self, store: Any, poisoned: str | None = None) -> None:
        self.store, self.poisoned, self.transactions = store, poisoned, 0

    async def __aenter__(self) -> CountingUnitOfWork:
        self.transactions += 1
        await self.store.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.store.__aexit__(exc_type, exc, traceback)

    async def record(self, events: Sequence[EventPayload], **options: Any) -> Any:
        for event in events:
            if isinstance(event, DeliverySucceeded) and event.person_id == self.poisoned:
                raise ValueError("a bug in recording this outcome")
        return await self.store.record(events, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def worker_on(uow: CountingUnitOfWork, sender: RecordingSender, ctx: Any) -> Any:
    worker = email_worker(uow.store, sender, ctx)
    worker._unit_of_work = lambda: uow
    return worker


async def test_outcomes_of_sends_that_end_together_are_recorded_in_one_transaction() -> None:
    ctx = context(roster())
    store, sender = store_for(ctx), RecordingSender()
    signals = [raised("S1"), raised("S2")]
    for envelope in signals:
        await plan(store, ctx, envelope)
    uow = CountingUnitOfWork(store)

    assert await worker_on(uow, sender, ctx).send_due() == 3

    assert uow.transactions == 2  # the claim, then every outcome together
    assert [row.status for row in store.outbox()] == ["sent"] * 3
    for envelope in signals:
        types = await stream_types(store, signal_of(envelope).signal_id)
        assert types.count("delivery_attempted") == types.count("delivery_succeeded") >= 1


async def test_an_outcome_that_cannot_be_recorded_fails_alone_and_is_not_sent_again() -> None:
    ctx = context(roster())
    store, sender = store_for(ctx), RecordingSender()
    envelope = raised("S1")  # the investigator pi1 and the sub-investigator sub1
    await plan(store, ctx, envelope)
    uow = CountingUnitOfWork(store, poisoned="sub1")
    worker = worker_on(uow, sender, ctx)

    assert await worker.send_due() == 2
    assert await worker.send_due() == 0

    assert sorted(d.recipient for d in sender.sent) == ["pi1@x.org", "sub1@x.org"]
    assert [row.status for row in store.outbox()] == ["sent", "sent"]
    types = await stream_types(store, signal_of(envelope).signal_id)
    assert types == ["opened"] + ["delivery_attempted"] * 2 + ["delivery_succeeded"]
