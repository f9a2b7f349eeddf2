"""Acknowledgement tokens are made when a message is sent, never stored: a resend after a
crash carries the same token, and migration 0009 takes the links out of existing rows.
Real PostgreSQL and a real SMTP server."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from services.notifier.adapters.smtp import SmtpSender
from services.notifier.adapters.webhook import WebhookSender
from services.notifier.domain.links import LinkKey, LinkKeyRing
from services.notifier.domain.messages import MessageContent, content_for_signal
from services.notifier.entrypoints.delivery_worker import DeliveryWorker, Sender
from services.notifier.handlers import NotifierContext
from shared.db.migrate import available_migrations
from tests.support.components import create_database, drop_database, migrate
from tests.support.mail import MailCatcher
from tests.support.notifier import (
    LINK_KEY,
    T0,
    CrashAfterSend,
    CrashError,
    ManualClock,
    context,
    only_investigators,
    plan,
    raised,
    roster,
    signal_of,
)
from tests.support.webhook import webhook_receiver

pytestmark = pytest.mark.integration
WORKSPACE = re.compile(r"https://vigil\.example/workspace/signals/([0-9a-f-]{36})")


def worker(pool: asyncpg.Pool, senders: dict[str, Sender], ctx: NotifierContext) -> DeliveryWorker:
    return DeliveryWorker(
        pool,
        senders,
        rosters=ctx.rosters,
        links=ctx.links,
        retry_max_seconds=1,
        give_up_after_seconds=600,
        lease_seconds=30,
    )


async def test_a_redelivery_after_a_crash_carries_the_same_token_even_after_a_key_rotation(
    pool: asyncpg.Pool,
) -> None:
    secret = b"webhook-secret-for-tests"
    async with webhook_receiver(secret) as receiver:
        the_roster = only_investigators(roster(primary_channels=[{"webhook": receiver.url}]))
        ctx = context(the_roster, ManualClock())
        envelope = raised("S1")  # to pi1's webhook
        await plan(pool, ctx, envelope)
        webhook = WebhookSender(secret)

        with pytest.raises(CrashError):
            await worker(pool, {"webhook": CrashAfterSend(webhook)}, ctx).send_due()
        await pool.execute("UPDATE deliveries SET next_attempt_at = now()")  # the lease ran out
        # the notifier comes back with a new key that signs from now on; the old one is kept
        rotated_keys = LinkKeyRing(LinkKey("test-2", b"n" * 32), (LINK_KEY,))
        restarted = context(the_roster, ManualClock(), keys=rotated_keys)
        assert await worker(pool, {"webhook": webhook}, restarted).send_due() == 1

    first, again = receiver.accepted
    assert first["message_id"] == again["message_id"]
    token = first["acknowledgement_token"]
    assert again["acknowledgement_token"] == token  # the same token, not a second credential
    signal_id = signal_of(envelope).signal_id
    assert restarted.links.verify(token, signal_id, T0).person_id == "pi1"
    stored = await pool.fetchval("SELECT string_agg(row_to_json(d)::text, '') FROM deliveries d")
    assert token not in stored
    assert "token=" not in stored


async def test_a_receiver_that_echoes_the_message_in_its_error_leaves_no_token_behind(
    pool: asyncpg.Pool,
) -> None:
    secret = b"webhook-secret-for-tests"
    async with webhook_receiver(secret) as receiver:
        receiver.echo_with_status = 500
        ctx = context(roster(primary_channels=[{"webhook": receiver.url}]), ManualClock())
        await plan(pool, ctx, raised("S1"))
        # pi1's webhook, and sub1's e-mail (no e-mail sender here: it fails too)
        assert await worker(pool, {"webhook": WebhookSender(secret)}, ctx).send_due() == 2
    error = await pool.fetchval(
        "SELECT payload->>'error' FROM events "
        "WHERE type LIKE '%delivery_failed%' AND payload->>'channel' = 'webhook'"
    )
    assert "acknowledge?token=[removed]" in error  # the echo is kept, its token is not
    stored = await pool.fetchval("SELECT last_error FROM deliveries WHERE channel = 'webhook'")
    assert "token=[removed]" in stored
    assert not re.search(r"token=(?!\[removed\])", error + stored)


async def migrated_up_to(dsn: str, version: int) -> None:
    """The schema as an older Vigil left it: every migration before ``version``."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            """CREATE TABLE schema_migrations (
                   version    integer     PRIMARY KEY,
                   name       text        NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT clock_timestamp())"""
        )
        for migration in available_migrations():
            if migration.version < version:
                await connection.execute(migration.sql)
                await connection.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
    finally:
        await connection.close()


async def test_existing_deliveries_survive_the_upgrade_without_their_tokens(
    postgres_dsn: str, own_smtp: tuple[int, MailCatcher]
) -> None:
    dsn = await create_database(postgres_dsn, prefix="upgrade")  # then emptied and rebuilt
    admin = await asyncpg.connect(dsn)
    await admin.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    await admin.close()
    try:
        await migrated_up_to(dsn, 9)
        alert = signal_of(raised("S1"))
        finding = signal_of(raised("S1", severity="finding"))
        old_link = "https://vigil.example/signals/{}/acknowledge?token=OLD{}.tok"
        rows = [
            # a pending alert, a sent one, and a pending digest with a linked item
            ("pending", "raised", alert.signal_id, "pi1", old_link.format(alert.signal_id, 1),
             content_for_signal(alert).model_dump_json()),
            ("sent", "escalation-1", alert.signal_id, "mm", old_link.format(alert.signal_id, 2),
             content_for_signal(alert).model_dump_json()),
            ("pending", "digest-2026-06-02", uuid.uuid4(), "sub1", None,
             MessageContent(kind="digest", study_id="NCT-NOTIFY", subject_id="_digest",
                            signal_id=uuid.uuid4(),
                            items=(f"finding - {old_link.format(finding.signal_id, 3)}",
                                   "RESOLVED: subject 01-004")).model_dump_json()),
        ]  # fmt: skip
        connection = await asyncpg.connect(dsn)
        try:
            for status, purpose, signal_id, person, link, content in rows:
                await connection.execute(
                    """INSERT INTO deliveries (delivery_id, signal_id, channel, recipient,
                           message_id, subject_line, body_text, body_html, status, purpose,
                           study_id, subject_id, person_id, content, link)
                       VALUES ($1, $2, 'email', $3 || '@x.org', $4, 'subject', $5, $5, $6, $7,
                               'NCT-NOTIFY', 'T-1', $3, $8::jsonb, $9)""",
                    uuid.uuid4(), signal_id, person, f"<{uuid.uuid4()}@vigil>",
                    f"Review and acknowledge: {link}", status, purpose, content, link,
                )  # fmt: skip
            await connection.executemany(
                """INSERT INTO digest_items (study_id, person_id, signal_id, item, line,
                       held_at, digest_day) VALUES ('NCT-NOTIFY', 'sub1', $1, $2, $3, now(), $4)""",
                [
                    (finding.signal_id, "raised", "line - " + old_link.format(finding.signal_id, 4),
                     None),
                    (alert.signal_id, "raised", "line - " + old_link.format(alert.signal_id, 5),
                     datetime(2026, 6, 2, tzinfo=UTC).date()),
                ],
            )  # fmt: skip
        finally:
            await connection.close()

        await migrate(dsn)  # `vigil db upgrade`

        connection = await asyncpg.connect(dsn)
        try:
            everything = await connection.fetchval(
                "SELECT (SELECT string_agg(row_to_json(d)::text, '') FROM deliveries d) "
                "|| (SELECT string_agg(row_to_json(i)::text, '') FROM digest_items i)"
            )
            assert "OLD" not in everything
            assert "token=" not in everything
            assert await connection.fetchval("SELECT count(*) FROM deliveries") == 3
            claims = await connection.fetchval(
                "SELECT link_claims FROM deliveries WHERE purpose = 'raised'"
            )
            assert json.loads(claims)["person_id"] == "pi1"
            assert await connection.fetchval(
                "SELECT link_claims IS NULL FROM deliveries WHERE status = 'sent'"
            )
            lines = await connection.fetch(
                "SELECT line, link_claims IS NOT NULL AS linked FROM digest_items "
                "ORDER BY digest_day NULLS FIRST"
            )
            assert [(r["line"], r["linked"]) for r in lines] == [("line", True), ("line", False)]
        finally:
            await connection.close()

        # the pending messages go out with a link made now, under the active key
        port, mailbox = own_smtp
        ctx = context(roster(), ManualClock(datetime.now(UTC)))
        upgraded = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        try:
            smtp = SmtpSender(f"smtp://127.0.0.1:{port}", "vigil@x.org")
            assert await worker(upgraded, {"email": smtp}, ctx).send_due() == 2
        finally:
            await upgraded.close()
        # ... each e-mail leading to its signal's page in the workspace, with no token
        alert_mail = mailbox.wait_for(lambda m: m.envelope_to == ["pi1@x.org"])[0]
        assert WORKSPACE.findall(alert_mail.body) == [str(alert.signal_id)]
        digest_mail = mailbox.wait_for(lambda m: m.envelope_to == ["sub1@x.org"])[0]
        assert WORKSPACE.findall(digest_mail.body) == [str(finding.signal_id)]
        for mail in (alert_mail, digest_mail):
            assert "token" not in mail.everything
        assert "RESOLVED: subject 01-004" in digest_mail.body
    finally:
        await drop_database(postgres_dsn, dsn)
