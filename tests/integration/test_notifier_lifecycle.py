"""Resolved, reopened and redelivered signals through the real store and a real SMTP server."""

from __future__ import annotations

import asyncpg
import pytest

from services.notifier import handlers
from services.notifier.domain.roster import Digest, Role
from services.notifier.handlers.digests import send_due_digests
from tests.support.mail import MailCatcher, Received
from tests.support.notifier import (
    ManualClock,
    context,
    email_worker,
    in_db,
    plan,
    raised,
    reopened,
    resolved,
    roster,
    signal_of,
    stream_types,
)

pytestmark = pytest.mark.integration


async def send_all(pool: asyncpg.Pool, port: int, ctx: handlers.NotifierContext) -> int:
    worker = email_worker(pool, port, ctx)
    sent = 0
    while tried := await worker.send_due():
        sent += tried
    return sent


def kinds(mail: list[Received]) -> list[str]:
    """The word after ``[Vigil]`` in each subject line: the study id for a first alert."""
    return sorted(str(m.message["Subject"]).split()[1].rstrip(":") for m in mail)


async def test_resolved_stops_escalation_reopened_runs_it_again_redelivery_sends_nothing(
    pool: asyncpg.Pool, own_smtp: tuple[int, MailCatcher]
) -> None:
    port, mailbox = own_smtp
    clock = ManualClock()
    ctx = context(roster(), clock)
    envelope = raised("S2", grade=3)  # pi2 is told; 4 h to acknowledge
    subject_id = signal_of(envelope).subject_id

    def to_pi2(m: Received) -> bool:
        return subject_id in str(m.message["Subject"]) and m.envelope_to == ["pi2@x.org"]

    await plan(pool, ctx, envelope)
    assert await send_all(pool, port, ctx) == 1
    mailbox.wait_for(to_pi2)

    clock.advance(hours=2)
    back_in_range = resolved(envelope, clock, "haemoglobin 10.4 g/dL: back in range")
    assert await plan(pool, ctx, back_in_range) == 1
    assert await plan(pool, ctx, back_in_range) == 0  # redelivered: nothing new
    assert await send_all(pool, port, ctx) == 1
    (notice,) = mailbox.wait_for(lambda m: to_pi2(m) and "RESOLVED" in str(m.message["Subject"]))
    assert "haemoglobin 10.4 g/dL: back in range" in notice.body
    assert "/workspace/signals/" not in notice.body  # nothing to acknowledge
    clock.advance(hours=10)  # far past the 4 h deadline
    assert await handlers.escalate_due(in_db(pool), ctx) == 0

    again = reopened(envelope, clock)  # 12 h after raising: 4 h from now
    assert await plan(pool, ctx, again) == 1
    assert await plan(pool, ctx, again) == 0
    assert await plan(pool, ctx, back_in_range) == 0  # an old redelivery changes nothing
    assert await send_all(pool, port, ctx) == 1
    (alert,) = mailbox.wait_for(lambda m: to_pi2(m) and "REOPENED" in str(m.message["Subject"]))
    assert "entered in error" in alert.body
    assert "/workspace/signals/" in alert.body  # acknowledge again
    clock.advance(hours=3, minutes=59)
    assert await handlers.escalate_due(in_db(pool), ctx) == 0
    clock.advance(minutes=1)
    assert await handlers.escalate_due(in_db(pool), ctx) == 1
    assert await handlers.escalate_due(in_db(pool), ctx) == 0
    assert await send_all(pool, port, ctx) == 1
    mailbox.wait_for(lambda m: m.envelope_to == ["mm@x.org"])

    # resolved again: a new resolution, told once more; escalation stops again
    clock.advance(hours=1)
    second = resolved(envelope, clock, "haemoglobin 10.9 g/dL: back in range")
    assert await plan(pool, ctx, second) == 2  # pi2, and mm who was told at level 1
    assert await plan(pool, ctx, second) == 0
    assert await send_all(pool, port, ctx) == 2
    clock.advance(days=5)
    assert await handlers.escalate_due(in_db(pool), ctx) == 0
    assert await send_all(pool, port, ctx) == 0

    mine = mailbox.matching(lambda m: subject_id in str(m.message["Subject"]))
    assert kinds(mine) == [
        "ESCALATED",
        "NCT-NOTIFY",
        "REOPENED",
        "RESOLVED",
        "RESOLVED",
        "RESOLVED",
    ]
    async with pool.acquire() as connection:
        types = await stream_types(connection, signal_of(envelope).signal_id)
    lifecycle_types = [t for t in types if not t.startswith("delivery")]
    assert lifecycle_types == ["opened", "resolved", "reopened", "escalated", "resolved"]
    assert types.count("delivery_succeeded") == 6


async def test_a_resolved_finding_reaches_the_digest_readers_in_their_digest(
    pool: asyncpg.Pool, own_smtp: tuple[int, MailCatcher]
) -> None:
    port, mailbox = own_smtp
    clock = ManualClock()  # 09:00; the digest hour is 07:00 UTC
    the_roster = roster().model_copy(
        update={"digest": Digest(roles=(Role.SUB_INVESTIGATOR,), hour_utc=7)}
    )
    ctx = context(the_roster, clock)
    finding = raised("S1", severity="finding", grade=1)
    await plan(pool, ctx, finding)
    clock.advance(hours=22)  # 07:00 the next day: the finding's digest
    assert await send_due_digests(in_db(pool), ctx) == 1
    clock.advance(hours=3)
    done = resolved(finding, clock, "haemoglobin 12.1 g/dL: back in range")
    assert await plan(pool, ctx, done) == 1  # pi1 at once; sub1 in the next digest
    assert await plan(pool, ctx, done) == 0
    clock.advance(days=1)
    assert await send_due_digests(in_db(pool), ctx) == 1
    assert await send_due_digests(in_db(pool), ctx) == 0
    assert await send_all(pool, port, ctx) == 4  # pi1: alert, resolved; sub1: two digests
    (now,) = mailbox.wait_for(lambda m: "RESOLVED" in str(m.message["Subject"]))
    assert now.envelope_to == ["pi1@x.org"]
    digests = mailbox.wait_for(lambda m: "DIGEST" in str(m.message["Subject"]), count=2)
    assert {tuple(m.envelope_to) for m in digests} == {("sub1@x.org",)}
    latest = max(digests, key=lambda m: "RESOLVED" in m.body)
    assert "RESOLVED: subject " + signal_of(finding).subject_id in latest.body
    assert "12.1 g/dL: back in range" in latest.body
