"""Found while breaking issue 16's ports from outside: one seeded random sequence of
notifier operations run on the in-memory unit of work and on PostgreSQL's, every answer
compared. Ties the contract leaves open (two deliveries due at the same instant) are
avoided, so any difference is a difference of behaviour."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.notifier.adapters.in_memory import InMemoryNotifierUnitOfWork
from services.notifier.adapters.unit_of_work import PostgresNotifierUnitOfWork
from services.notifier.domain.deliveries import PlannedDelivery
from services.notifier.handlers.ports import NotifierUnitOfWork
from shared.db.pool import create_pool
from shared.events.notifications import NotificationOpened
from tests.contract.test_notifier_unit_of_work_contract import (
    acknowledged,
    opened,
    planned,
    reopened,
    withdrawn,
)
from tests.support.notifier import STUDY, T0

pytestmark = pytest.mark.integration
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)
FAR = datetime(2099, 1, 1, tzinfo=UTC)
STEPS = 120


class Boom(Exception):
    """Rolls a block back."""


def script(seed: int) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    signals = [opened() for _ in range(3)]
    people = ["pi1", "sub1", "mm"]
    deliveries: list[PlannedDelivery] = []
    steps: list[tuple[Any, ...]] = []
    for n in range(STEPS):
        signal = rng.choice(signals)
        op = rng.choice(
            [
                "record", "add", "claim", "sent", "failed", "cancel", "hold", "drop",
                "held", "digest-sent", "read", "rollback",
            ]
        )  # fmt: skip
        if op == "record":
            event = rng.choice([signal, acknowledged(signal), withdrawn(signal), reopened(signal)])
            steps.append(("record", event))
        elif op == "add":
            delivery = planned(signal, rng.choice(people), rng.choice(["raised", "escalation-1"]))
            deliveries.append(delivery)
            steps.append(("add", delivery))
        elif op in ("sent", "failed") and deliveries:
            delivery = rng.choice(deliveries)
            when = rng.choice([None, LONG_AGO + timedelta(seconds=n), FAR])
            steps.append((op, delivery.delivery_id, when))
        elif op == "claim":
            steps.append(("claim", rng.randint(1, 3)))
        elif op == "cancel":
            steps.append(("cancel", signal.signal_id))
        elif op == "hold":
            person = rng.choice(people)
            steps.append(("hold", signal.signal_id, person, rng.choice(["raised", "resolved-1"]),
                          T0 + timedelta(minutes=rng.randint(0, 5))))  # fmt: skip
        elif op == "drop":
            steps.append(("drop", signal.signal_id))
        elif op == "held":
            steps.append(("held", T0 + timedelta(minutes=rng.randint(0, 6))))
        elif op == "digest-sent":
            steps.append(("digest-sent", T0 + timedelta(minutes=rng.randint(0, 6))))
        elif op == "read":
            steps.append(("read", signal))
        elif op == "rollback":
            steps.append(("rollback", signal))
    return steps


async def run(uow: NotifierUnitOfWork, steps: list[tuple[Any, ...]]) -> list[Any]:
    seen: list[Any] = []
    for step in steps:
        op = step[0]
        try:
            async with uow:
                if op == "record":
                    appended = await uow.record([step[1]])
                    seen.append((op, [a.new for a in appended]))
                elif op == "add":
                    seen.append(
                        (op, await uow.add_deliveries([step[1]], give_up_after_seconds=3600))
                    )
                elif op == "sent":
                    await uow.mark_sent(step[1])
                elif op == "failed":
                    await uow.mark_failed(step[1], "refused", step[2])
                elif op == "claim":
                    claimed, unreadable = await uow.claim_due(step[1], lease_seconds=600)
                    seen.append((op, [(c.delivery.delivery_id, c.attempt) for c in claimed],
                                 len(unreadable)))  # fmt: skip
                elif op == "cancel":
                    seen.append((op, await uow.cancel_pending(step[1])))
                elif op == "hold":
                    _, signal_id, person, item, at = step
                    await uow.hold_digest_items(STUDY, [(person, f"line {item}", None)], signal_id,
                                                at, item=item)  # fmt: skip
                elif op == "drop":
                    await uow.drop_digest_items(step[1])
                elif op == "held":
                    seen.append((op, await uow.held_before(STUDY, step[1])))
                elif op == "digest-sent":
                    for items in await uow.held_before(STUDY, step[1]):
                        await uow.mark_digest_sent(items, T0.date())
                elif op == "read":
                    signal: NotificationOpened = step[1]
                    seen.append((op, await uow.notification_events(signal.signal_id),
                                 await uow.deliveries_of(signal.signal_id),
                                 await uow.digests_sent_to(signal.signal_id),
                                 sorted(str(t[0].signal_id) for t in await uow.open_timers())))  # type: ignore[attr-defined]  # fmt: skip
                elif op == "rollback":
                    await uow.record([reopened(step[1])], event_ids=[uuid.uuid4()])
                    await uow.add_deliveries([planned(step[1], "rb")], give_up_after_seconds=60)
                    raise Boom
        except Boom:
            seen.append(("rolled back",))
    return seen


@pytest.mark.parametrize("seed", range(1, 6))
async def test_one_random_sequence_gets_the_same_answers_from_both(
    fresh_dsn: str, seed: int
) -> None:
    steps = script(seed)
    in_memory = await run(InMemoryNotifierUnitOfWork(), steps)
    pool = await create_pool(fresh_dsn)
    try:
        in_postgres = await run(PostgresNotifierUnitOfWork(pool), steps)
    finally:
        await pool.close()
    assert len(in_memory) == len(in_postgres)
    for memory, postgres in zip(in_memory, in_postgres, strict=True):
        assert memory == postgres
