"""The notifier's work queue on a real PostgreSQL and a real SMTP server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from services.notifier.adapters.postgres import add_deliveries
from services.notifier.adapters.smtp import SmtpSender
from services.notifier.delivery_worker import DeliveryWorker
from services.notifier.domain.messages import render_email
from shared.db.pool import create_pool
from shared.events import SafetySignalRaised
from tests.support.mail import start_smtp_server
from vigil.devstack.ports import free_port

pytestmark = pytest.mark.integration


def signal() -> SafetySignalRaised:
    return SafetySignalRaised(
        study_id="NCT05262686",
        subject_id="01-009",
        site_id="PKUPH-01",
        signal_id=uuid.uuid4(),
        rule_id="anaemia-hb-le-9",
        rule_title="Haemoglobin at or below 9 g/dL",
        rule_pack_version="1",
        input_event_ids=(uuid.uuid4(),),
        computed_values={},
        analyte="haemoglobin",
        observed_value=Decimal("8.0"),
        observed_unit="g/dL",
        threshold="<= 9 g/dL",
        collected_at=datetime(2026, 6, 1, tzinfo=UTC),
    )


async def test_planned_twice_sent_once_with_stable_message_id(fresh_dsn: str) -> None:
    port = free_port()
    controller, mailbox = start_smtp_server(port)
    pool = await create_pool(fresh_dsn)
    try:
        delivery = render_email(signal(), recipient="pi@site.example.org", base_url="http://x")
        async with pool.acquire() as connection:
            assert await add_deliveries(connection, [delivery]) == 1
            assert await add_deliveries(connection, [delivery]) == 0
        worker = DeliveryWorker(
            pool, SmtpSender(f"smtp://127.0.0.1:{port}", "vigil@x.org"), retry_max_seconds=1
        )

        assert await worker.send_due() == 1
        assert await worker.send_due() == 0

        (mail,) = mailbox.wait_for(lambda m: True)
        assert mail.message["Message-ID"] == delivery.message_id
        assert mail.envelope_to == ["pi@site.example.org"]
    finally:
        await pool.close()
        controller.stop()


async def test_refused_delivery_is_retried_later_until_the_server_recovers(
    fresh_dsn: str,
) -> None:
    port = free_port()  # nothing listens yet: connection refused
    pool = await create_pool(fresh_dsn)
    try:
        delivery = render_email(signal(), recipient="pi@site.example.org", base_url="http://x")
        async with pool.acquire() as connection:
            await add_deliveries(connection, [delivery])
        worker = DeliveryWorker(
            pool, SmtpSender(f"smtp://127.0.0.1:{port}", "vigil@x.org"), retry_max_seconds=1
        )

        assert await worker.send_due() == 1
        row = await pool.fetchrow("SELECT * FROM deliveries")
        assert row["status"] == "pending"
        assert row["attempts"] == 1
        assert "Connect" in row["last_error"] or "refused" in row["last_error"].lower()
        assert row["next_attempt_at"] > datetime.now(UTC)
        assert await worker.send_due() == 0  # not due yet

        controller, mailbox = start_smtp_server(port)
        try:
            await pool.execute("UPDATE deliveries SET next_attempt_at = now()")
            assert await worker.send_due() == 1
            mailbox.wait_for(lambda m: True)
            row = await pool.fetchrow("SELECT status, attempts FROM deliveries")
            assert (row["status"], row["attempts"]) == ("sent", 2)
        finally:
            controller.stop()
    finally:
        await pool.close()


async def test_crash_before_commit_resends_with_the_same_message_id(fresh_dsn: str) -> None:
    """The window between sending and recording: the repeat is recognisable."""
    port = free_port()
    controller, mailbox = start_smtp_server(port)
    pool = await create_pool(fresh_dsn)
    sender = SmtpSender(f"smtp://127.0.0.1:{port}", "vigil@x.org")
    try:
        delivery = render_email(signal(), recipient="pi@site.example.org", base_url="http://x")
        async with pool.acquire() as connection:
            await add_deliveries(connection, [delivery])

        class CrashError(Exception):
            pass

        class CrashAfterSend:
            async def send(self, item: object) -> None:
                await sender.send(item)  # type: ignore[arg-type]
                raise CrashError  # the process dies before the transaction commits

        with pytest.raises(CrashError):
            await DeliveryWorker(pool, CrashAfterSend(), retry_max_seconds=1).send_due()
        assert await pool.fetchval("SELECT status FROM deliveries") == "pending"

        assert await DeliveryWorker(pool, sender, retry_max_seconds=1).send_due() == 1
        mails = mailbox.wait_for(lambda m: True, count=2)
        assert {m.message["Message-ID"] for m in mails} == {delivery.message_id}
    finally:
        await pool.close()
        controller.stop()
