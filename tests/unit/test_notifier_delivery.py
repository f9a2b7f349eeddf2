"""Planning and sending deliveries: the delivery worker on the in-memory unit of work,
with senders that record, refuse or crash (the twins of the planning parts of
tests/integration/test_notifier_delivery.py, which runs them on PostgreSQL and real
SMTP servers)."""

from __future__ import annotations

from dataclasses import dataclass

import aiosmtplib
import pytest

from services.notifier.domain.messages import Delivery
from tests.support.notifier import (
    CrashAfterSend,
    CrashError,
    ManualClock,
    context,
    only_investigators,
    raised,
    roster,
    signal_of,
)
from tests.support.notifier_in_memory import (
    RecordingSender,
    email_worker,
    plan,
    store_for,
    stream_types,
)


@dataclass
class RefusingFirst:
    """A server that refuses the first ``refusals`` messages (451), then accepts."""

    refusals: int
    accepted: RecordingSender

    async def send(self, delivery: Delivery) -> str:
        if self.refusals:
            self.refusals -= 1
            raise aiosmtplib.SMTPResponseException(451, "try again later")
        return await self.accepted.send(delivery)


async def test_one_message_per_person_and_channel_even_when_the_signal_comes_twice() -> None:
    ctx = context(roster())
    store, sender = store_for(ctx), RecordingSender()
    envelope = raised("S1")
    assert await plan(store, ctx, envelope) == 2  # investigator and sub-investigator
    assert await plan(store, ctx, envelope) == 0  # redelivered by the broker
    assert await email_worker(store, sender, ctx).send_due() == 2
    assert await email_worker(store, sender, ctx).send_due() == 0

    assert sorted(d.recipient for d in sender.sent) == ["pi1@x.org", "sub1@x.org"]
    for mail in sender.sent:
        assert mail.body_html is not None
        assert "https://vigil.example/workspace/signals/" in mail.body_text
    types = await stream_types(store, signal_of(envelope).signal_id)
    assert types == ["opened"] + ["delivery_attempted"] * 2 + ["delivery_succeeded"] * 2


async def test_refusing_server_is_retried_until_it_recovers() -> None:
    clock = ManualClock()
    ctx = context(roster(), clock)
    store, sender = store_for(ctx), RecordingSender()
    envelope = raised("S2")
    await plan(store, ctx, envelope)
    send = email_worker(store, RefusingFirst(2, sender), ctx)
    for _ in range(3):
        assert await send.send_due() == 1
        clock.advance(seconds=2)  # past the back-off (at most 1 s here)
    assert [d.recipient for d in sender.sent] == ["pi2@x.org"]
    (row,) = store.outbox()
    assert (row.status, row.attempts) == ("sent", 3)
    assert await stream_types(store, signal_of(envelope).signal_id) == [
        "opened",
        "delivery_attempted", "delivery_failed",
        "delivery_attempted", "delivery_failed",
        "delivery_attempted", "delivery_succeeded",
    ]  # fmt: skip
    failed = [e for e in store.events() if e.type.endswith("delivery_failed.v1")]
    assert "451" in str(failed[0].data["error"])


async def test_unreachable_person_falls_back_to_the_backup() -> None:
    ctx = context(only_investigators(roster()), give_up=0.0)
    store, sender = store_for(ctx), RecordingSender(unreachable={"pi1@x.org"})
    await plan(store, ctx, raised("S1"))
    send = email_worker(store, sender, ctx)
    assert await send.send_due() == 1  # refused: no other channel, so the backup
    assert await send.send_due() == 1
    assert [d.recipient for d in sender.sent] == ["sub1@x.org"]
    (fell_back,) = [e for e in store.events() if e.type.endswith("delivery_fell_back.v1")]
    assert fell_back.data["to_person_id"] == "sub1"


async def test_crash_between_sending_and_recording_repeats_with_the_same_message_id() -> None:
    """The one window for a repeat: sent, but the outcome never committed."""
    clock = ManualClock()
    ctx = context(roster(), clock)
    store, sender = store_for(ctx), RecordingSender()
    envelope = raised("S2")
    await plan(store, ctx, envelope)

    with pytest.raises(CrashError):
        await email_worker(store, CrashAfterSend(sender), ctx).send_due()
    assert [row.status for row in store.outbox()] == ["pending"]
    assert await email_worker(store, sender, ctx).send_due() == 0  # leased
    clock.advance(minutes=2)  # the lease ran out
    assert await email_worker(store, sender, ctx).send_due() == 1

    assert len(sender.sent) == 2
    assert len({d.message_id for d in sender.sent}) == 1
    types = await stream_types(store, signal_of(envelope).signal_id)
    assert types == ["opened", "delivery_attempted", "delivery_attempted", "delivery_succeeded"]
