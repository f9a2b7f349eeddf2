"""Deliveries on a real PostgreSQL, real SMTP servers (aiosmtpd) and a real HTTP receiver."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from services.notifier.adapters.smtp import SmtpSender
from services.notifier.adapters.webhook import WebhookSender
from services.notifier.domain.messages import Delivery
from services.notifier.entrypoints.delivery_worker import DeliveryWorker, Sender
from shared.supervision import Supervisor
from tests.support.mail import RefusingCatcher, SlowCatcher, start_smtp_server
from tests.support.notifier import (
    CrashAfterSend,
    CrashError,
    context,
    only_investigators,
    plan,
    raised,
    roster,
    signal_of,
    stream_types,
)
from tests.support.waiting import eventually
from tests.support.webhook import trickling_receiver, webhook_receiver
from vigil.devstack.ports import free_port

pytestmark = pytest.mark.integration
WEBHOOK_SECRET = b"webhook-secret-for-tests"


def worker(pool: asyncpg.Pool, senders: dict[str, Sender], ctx: Any) -> DeliveryWorker:
    return DeliveryWorker(
        pool,
        senders,
        rosters=ctx.rosters,
        links=ctx.links,
        retry_max_seconds=1,
        give_up_after_seconds=ctx.give_up_after_seconds,
        lease_seconds=30,
    )


async def make_due(pool: asyncpg.Pool) -> None:
    """Skip the back-off (or the lease) instead of sleeping through it."""
    await pool.execute("UPDATE deliveries SET next_attempt_at = now() WHERE status = 'pending'")


async def test_one_message_per_person_and_channel_even_when_the_signal_comes_twice(
    pool: asyncpg.Pool,
) -> None:
    port = free_port()
    controller, mailbox = start_smtp_server(port)
    try:
        ctx = context(roster())
        envelope = raised("S1")
        assert await plan(pool, ctx, envelope) == 2  # investigator and sub-investigator
        assert await plan(pool, ctx, envelope) == 0  # redelivered by the broker
        smtp = SmtpSender(f"smtp://127.0.0.1:{port}", "vigil@x.org")
        assert await worker(pool, {"email": smtp}, ctx).send_due() == 2
        assert await worker(pool, {"email": smtp}, ctx).send_due() == 0

        mails = mailbox.wait_for(lambda m: True, count=2)
        assert sorted(to for m in mails for to in m.envelope_to) == ["pi1@x.org", "sub1@x.org"]
        for mail in mails:
            assert mail.message.get_body(preferencelist=("html",)) is not None
            assert "https://vigil.example/workspace/signals/" in mail.body
        signal_id = signal_of(envelope).signal_id
        async with pool.acquire() as connection:
            types = await stream_types(connection, signal_id)
        assert types == ["opened"] + ["delivery_attempted"] * 2 + ["delivery_succeeded"] * 2
    finally:
        controller.stop()


async def test_a_trickling_webhook_is_a_failed_attempt_and_holds_up_no_other_delivery(
    pool: asyncpg.Pool,
) -> None:
    """Each attempt has a deadline for the whole exchange, not for each read; the running
    worker sends other deliveries while one is in flight, and a timed-out attempt is a
    failed one, retried later."""
    port = free_port()
    controller, mailbox = start_smtp_server(port)
    try:
        async with trickling_receiver() as (url, hits), Supervisor("test") as supervisor:
            ctx = context(roster(primary_channels=[{"webhook": url}]))
            senders: dict[str, Sender] = {
                "email": SmtpSender(f"smtp://127.0.0.1:{port}", "v@x.org"),
                "webhook": WebhookSender(WEBHOOK_SECRET, timeout=30),
            }
            send = DeliveryWorker(
                pool,
                senders,
                rosters=ctx.rosters,
                links=ctx.links,
                retry_max_seconds=60,
                give_up_after_seconds=ctx.give_up_after_seconds,
                send_timeout_seconds=4,
            )
            hooked = raised("S1")  # pi1 by the webhook, sub1 by e-mail
            await plan(pool, ctx, hooked)
            started = time.monotonic()
            supervisor.start("delivery-worker", send.run)
            await eventually(lambda: asyncio.sleep(0, bool(hits)), timeout=10, what="webhook hit")
            await plan(pool, ctx, raised("S2"))  # pi2, by e-mail, planned after
            send.wake()
            await asyncio.to_thread(
                mailbox.wait_for, lambda m: m.envelope_to == ["pi2@x.org"], timeout=3
            )  # while the webhook still trickles

            async def failed() -> str | None:
                error: str | None = await pool.fetchval(
                    "SELECT last_error FROM deliveries WHERE channel = 'webhook'"
                )
                return error

            error = await eventually(failed, timeout=10, what="the webhook attempt failed")
            assert "did not end within 4 s" in error
            assert time.monotonic() - started < 10
            row = await pool.fetchrow(
                "SELECT status, attempts FROM deliveries WHERE channel = 'webhook'"
            )
            assert (row["status"], row["attempts"]) == ("pending", 1)  # retried later
    finally:
        controller.stop()


async def test_refusing_server_is_retried_until_it_recovers(pool: asyncpg.Pool) -> None:
    port = free_port()
    controller, mailbox = start_smtp_server(port, RefusingCatcher(refusals=2))
    try:
        ctx = context(roster())
        envelope = raised("S2")
        await plan(pool, ctx, envelope)
        send = worker(pool, {"email": SmtpSender(f"smtp://127.0.0.1:{port}", "v@x.org")}, ctx)
        for _ in range(3):
            assert await send.send_due() == 1
            await make_due(pool)
        mailbox.wait_for(lambda m: True)
        row = await pool.fetchrow("SELECT status, attempts FROM deliveries")
        assert (row["status"], row["attempts"]) == ("sent", 3)
        async with pool.acquire() as connection:
            types = await stream_types(connection, envelope.payload().signal_id)  # type: ignore[attr-defined]
        assert types == [
            "opened",
            "delivery_attempted", "delivery_failed",
            "delivery_attempted", "delivery_failed",
            "delivery_attempted", "delivery_succeeded",
        ]  # fmt: skip
        failed = await pool.fetchval(
            "SELECT payload->>'error' FROM events WHERE type LIKE '%delivery_failed%' LIMIT 1"
        )
        assert "451" in failed
    finally:
        controller.stop()


async def test_stalling_server_falls_back_to_the_signed_webhook(pool: asyncpg.Pool) -> None:
    port = free_port()
    controller, _ = start_smtp_server(port, SlowCatcher(delay=3))
    try:
        async with webhook_receiver(WEBHOOK_SECRET) as receiver:
            channels = [{"email": "pi1@x.org"}, {"webhook": receiver.url}]
            ctx = context(only_investigators(roster(primary_channels=channels)), give_up=0.0)
            envelope = raised("S1")
            await plan(pool, ctx, envelope)
            senders: dict[str, Sender] = {
                "email": SmtpSender(f"smtp://127.0.0.1:{port}", "v@x.org", timeout=0.5),
                "webhook": WebhookSender(WEBHOOK_SECRET, timeout=5),
            }
            send = worker(pool, senders, ctx)
            assert await send.send_due() == 1  # e-mail stalls, times out: give up, fall back
            assert await send.send_due() == 1  # the webhook
            (document,) = receiver.accepted
            signal_id = signal_of(envelope).signal_id
            assert document["signal_id"] == str(signal_id)
            # a person opens the workspace; the receiver, a system, acknowledges with the
            # token through the API (acknowledge_url: the deprecated form carrying it)
            assert (
                document["workspace_url"] == f"https://vigil.example/workspace/signals/{signal_id}"
            )
            assert document["acknowledgement_api"] == (
                f"https://vigil.example/v1/signals/{signal_id}/acknowledgements"
            )
            token = document["acknowledgement_token"]
            # made by the fallback, on the worker's clock
            assert ctx.links.verify(token, signal_id, datetime.now(UTC)).person_id == "pi1"
            assert document["acknowledge_url"].endswith(f"/acknowledge?token={token}")
            assert receiver.headers[0]["idempotency-key"]
            assert receiver.refused == 0
            async with pool.acquire() as connection:
                types = await stream_types(connection, signal_id)
            assert types == [
                "opened",
                "delivery_attempted", "delivery_failed", "delivery_fell_back",
                "delivery_attempted", "delivery_succeeded",
            ]  # fmt: skip
    finally:
        controller.stop()


async def test_unreachable_person_falls_back_to_the_backup(pool: asyncpg.Pool) -> None:
    dead_port, port = free_port(), free_port()
    controller, mailbox = start_smtp_server(port)

    class ByAddress:
        """pi1's mail server is down; everyone else's works."""

        def __init__(self) -> None:
            self.dead = SmtpSender(f"smtp://127.0.0.1:{dead_port}", "v@x.org", timeout=2)
            self.live = SmtpSender(f"smtp://127.0.0.1:{port}", "v@x.org", timeout=5)

        async def send(self, delivery: Delivery) -> str:
            target = self.dead if delivery.recipient == "pi1@x.org" else self.live
            return await target.send(delivery)

    try:
        ctx = context(only_investigators(roster()), give_up=0.0)
        await plan(pool, ctx, raised("S1"))
        send = worker(pool, {"email": ByAddress()}, ctx)
        assert await send.send_due() == 1  # refused: no other channel, so the backup
        assert await send.send_due() == 1
        (mail,) = mailbox.wait_for(lambda m: True)
        assert mail.envelope_to == ["sub1@x.org"]
        fell_back = await pool.fetchval(
            "SELECT payload->>'to_person_id' FROM events WHERE type LIKE '%delivery_fell_back%'"
        )
        assert fell_back == "sub1"
    finally:
        controller.stop()


async def test_crash_between_sending_and_recording_repeats_with_the_same_message_id(
    pool: asyncpg.Pool,
) -> None:
    """The one window for a repeat: sent, but the outcome never committed."""
    port = free_port()
    controller, mailbox = start_smtp_server(port)
    smtp = SmtpSender(f"smtp://127.0.0.1:{port}", "vigil@x.org")
    try:
        ctx = context(roster())
        envelope = raised("S2")
        await plan(pool, ctx, envelope)

        with pytest.raises(CrashError):
            await worker(pool, {"email": CrashAfterSend(smtp)}, ctx).send_due()
        assert await pool.fetchval("SELECT status FROM deliveries") == "pending"
        assert await worker(pool, {"email": smtp}, ctx).send_due() == 0  # leased
        await make_due(pool)  # the lease ran out
        assert await worker(pool, {"email": smtp}, ctx).send_due() == 1

        mails = mailbox.wait_for(lambda m: True, count=2)
        assert len({m.message["Message-ID"] for m in mails}) == 1
        async with pool.acquire() as connection:
            types = await stream_types(connection, envelope.payload().signal_id)  # type: ignore[attr-defined]
        assert types == ["opened", "delivery_attempted", "delivery_attempted", "delivery_succeeded"]
    finally:
        controller.stop()
