"""One bad delivery never stops the line (real PostgreSQL, real aiosmtpd): a delivery that
cannot be read or built is a failed attempt with its reason, backed off behind the
others, and every other message goes out."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.notifier import handlers
from services.notifier.adapters import notification_log
from services.notifier.adapters.postgres import PostgresNotifierUnitOfWork
from services.notifier.adapters.smtp import SmtpSender
from services.notifier.domain.planning import open_notification
from services.notifier.entrypoints.delivery_worker import DeliveryWorker
from services.notifier.handlers import NotifierContext
from shared.clock import Clock
from shared.supervision import Supervisor
from tests.support.mail import MailCatcher, running_smtp_server
from tests.support.notifier import (
    T0,
    ManualClock,
    context,
    plan,
    raised,
    roster,
    signal_of,
    stream_types,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def supervisor() -> AsyncIterator[Supervisor]:
    """A supervisor whose reports the test reads; stopped afterwards."""
    async with Supervisor("test-poison") as running:
        yield running


@pytest.fixture
def smtp() -> Iterator[tuple[int, MailCatcher]]:
    with running_smtp_server() as server:
        yield server


def worker(
    pool: asyncpg.Pool, port: int, ctx: NotifierContext, clock: Clock | None = None
) -> DeliveryWorker:
    return DeliveryWorker(
        pool,
        {"email": SmtpSender(f"smtp://127.0.0.1:{port}", "vigil@x.org", timeout=10)},
        rosters=ctx.rosters,
        links=ctx.links,
        retry_max_seconds=300,
        give_up_after_seconds=900,
        clock=clock,
    )


async def first_in_line(pool: asyncpg.Pool, delivery_id: uuid.UUID) -> None:
    """Put a delivery at the head of the queue."""
    await pool.execute(
        "UPDATE deliveries SET next_attempt_at = now() - interval '1 hour' WHERE delivery_id = $1",
        delivery_id,
    )


async def test_a_poison_delivery_first_in_the_queue_fails_alone_and_the_others_are_sent(
    pool: asyncpg.Pool, smtp: tuple[int, MailCatcher], supervisor: Supervisor
) -> None:
    port, mailbox = smtp
    ctx = context(roster())
    good = [raised("S2") for _ in range(3)]  # one message each, to pi2
    unreadable, unbuildable = raised("S2"), raised("S2")
    for envelope in [*good, unreadable, unbuildable]:
        assert await plan(pool, ctx, envelope) == 1
    poison = {
        name: await pool.fetchval(
            "SELECT delivery_id FROM deliveries WHERE signal_id = $1",
            signal_of(envelope).signal_id,
        )
        for name, envelope in (("unreadable", unreadable), ("unbuildable", unbuildable))
    }
    # written by another version (a field this one does not know) ...
    await pool.execute(
        """UPDATE deliveries SET content = content || '{"patient_note": "kept out of logs"}'
           WHERE delivery_id = $1""",
        poison["unreadable"],
    )
    # ... and an address that would break the To header
    await pool.execute(
        "UPDATE deliveries SET recipient = E'pi2\\r\\nBcc: x@evil.example' WHERE delivery_id = $1",
        poison["unbuildable"],
    )
    for delivery_id in poison.values():
        await first_in_line(pool, delivery_id)
    progress = supervisor.watch("delivery-worker")
    # the poison's back-off is counted from a clock ten minutes ahead, so that it cannot
    # fall due again however slowly this machine reaches the next round
    ahead = ManualClock(datetime.now(UTC) + timedelta(minutes=10))

    tried = await worker(pool, port, ctx, ahead).send_due(progress)

    assert tried == 5
    mails = mailbox.wait_for(lambda m: True, count=3)
    assert {m.envelope_to[0] for m in mails} == {"pi2@x.org"}
    assert not any("evil" in address for m in mailbox.received for address in m.envelope_to)
    rows = {
        row["delivery_id"]: row
        for row in await pool.fetch(
            "SELECT delivery_id, status, attempts, last_error, "
            "next_attempt_at > now() AS backed_off FROM deliveries"  # due later, not at once
        )
    }
    assert sum(1 for row in rows.values() if row["status"] == "sent") == 3
    unread, unbuilt = rows[poison["unreadable"]], rows[poison["unbuildable"]]
    assert unread["status"] == unbuilt["status"] == "pending"
    assert unread["attempts"] == unbuilt["attempts"] == 1
    assert unread["backed_off"]
    assert unbuilt["backed_off"]
    assert unread["last_error"].startswith("stored message cannot be read: ValidationError")
    assert unbuilt["last_error"].startswith("message could not be built or sent: ValueError at")
    for row in (unread, unbuilt):
        assert "kept out of logs" not in row["last_error"]
        assert "evil" not in row["last_error"]
    failed = await pool.fetch(
        "SELECT payload->>'error' AS error FROM events WHERE type LIKE '%delivery_failed%'"
    )
    assert sorted(r["error"] for r in failed) == sorted(
        [unread["last_error"], unbuilt["last_error"]]
    )
    report = supervisor.report()[0]
    assert report["item_failures"] == 2
    assert {item["item"] for item in report["failing_items"]} == {
        f"delivery {delivery_id}" for delivery_id in poison.values()
    }

    # the next round: a new delivery goes out; the poison waits its back-off, not first
    fresh = raised("S2")
    await plan(pool, ctx, fresh)

    assert await worker(pool, port, ctx, ahead).send_due(progress) == 1
    mailbox.wait_for(lambda m: True, count=4)
    assert (
        await pool.fetchval(
            "SELECT attempts FROM deliveries WHERE delivery_id = $1", poison["unreadable"]
        )
        == 1
    )


async def test_an_adverse_event_term_with_a_line_break_is_delivered_on_one_subject_line(
    pool: asyncpg.Pool, smtp: tuple[int, MailCatcher]
) -> None:
    port, mailbox = smtp
    ctx = context(roster())
    envelope = raised(
        "S2",
        rule_id="sae-any",
        analyte="Pneumonia\r\nrequiring\u2028hospitalisation",
        observed_value=None,
        observed_unit=None,
        serious=True,
    )
    planned = await plan(pool, ctx, envelope)  # a serious AE: the medical monitor too

    assert await worker(pool, port, ctx).send_due() == planned

    for mail in mailbox.wait_for(lambda m: True, count=planned):
        assert str(mail.message["Subject"]).endswith(
            "Pneumonia requiring hospitalisation (sae-any)"
        )
    async with pool.acquire() as connection:
        types = await stream_types(connection, signal_of(envelope).signal_id)
    assert types[-1] == "delivery_succeeded"


async def test_an_escalation_that_cannot_be_planned_fails_alone_and_the_others_escalate(
    pool: asyncpg.Pool,
    supervisor: Supervisor,
) -> None:
    clock = ManualClock()
    ctx = context(roster(), clock)
    good = raised("S1", grade=3)
    await plan(pool, ctx, good)
    # a notification whose stored message this version cannot read
    opened, _, _ = open_notification(
        signal_of(raised("S1", grade=3)), raised_at=T0, roster=roster(), deadlines=ctx.deadlines
    )
    unreadable = opened.model_copy(update={"message": {"kind": "a kind nobody knows"}})
    async with pool.acquire() as connection, connection.transaction():
        await notification_log.record(connection, [unreadable])
    progress = supervisor.watch("timers")
    clock.advance(hours=4)  # both past the grade-3 deadline

    assert await handlers.escalate_due(PostgresNotifierUnitOfWork(pool), ctx, progress) == 1

    assert (
        await pool.fetchval(
            "SELECT count(*) FROM deliveries WHERE purpose = 'escalation-1' AND signal_id = $1",
            signal_of(good).signal_id,
        )
        == 1
    )
    (report,) = supervisor.report()
    assert report["failing_items"][0]["item"] == f"escalation of signal {unreadable.signal_id}"
    assert report["failing_items"][0]["reason"].startswith("ValidationError")
