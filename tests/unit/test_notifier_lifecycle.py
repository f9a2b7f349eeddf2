"""Resolved, reopened and redelivered signals, and what digest readers are told: the
handlers and the delivery worker on the in-memory unit of work (the twins of
tests/integration/test_notifier_lifecycle.py, which runs them on PostgreSQL and SMTP)."""

from __future__ import annotations

from services.notifier import handlers
from services.notifier.domain.roster import Digest, Role
from services.notifier.handlers.digests import send_due_digests
from tests.support.notifier import (
    ManualClock,
    context,
    raised,
    reopened,
    resolved,
    roster,
    signal_of,
)
from tests.support.notifier_in_memory import (
    RecordingSender,
    email_worker,
    plan,
    send_all,
    store_for,
    stream_types,
)


async def test_resolved_stops_escalation_reopened_runs_it_again_redelivery_sends_nothing() -> None:
    clock = ManualClock()
    ctx = context(roster(), clock)
    store = store_for(ctx)
    sender = RecordingSender()
    worker = email_worker(store, sender, ctx)
    envelope = raised("S2", grade=3)  # pi2 is told; 4 h to acknowledge
    subject_id = signal_of(envelope).subject_id

    def to_pi2(kind: str) -> list[str]:
        return [
            d.body_text
            for d in sender.sent
            if d.recipient == "pi2@x.org" and kind in d.subject_line
        ]

    await plan(store, ctx, envelope)
    assert await send_all(worker) == 1
    assert len(to_pi2(subject_id)) == 1

    clock.advance(hours=2)
    back_in_range = resolved(envelope, clock, "haemoglobin 10.4 g/dL: back in range")
    assert await plan(store, ctx, back_in_range) == 1
    assert await plan(store, ctx, back_in_range) == 0  # redelivered: nothing new
    assert await send_all(worker) == 1
    (notice,) = to_pi2("RESOLVED")
    assert "haemoglobin 10.4 g/dL: back in range" in notice
    assert "/workspace/signals/" not in notice  # nothing to acknowledge
    clock.advance(hours=10)  # far past the 4 h deadline
    assert await handlers.escalate_due(store, ctx) == 0

    again = reopened(envelope, clock)  # 12 h after raising: 4 h from now
    assert await plan(store, ctx, again) == 1
    assert await plan(store, ctx, again) == 0
    assert await plan(store, ctx, back_in_range) == 0  # an old redelivery changes nothing
    assert await send_all(worker) == 1
    (alert,) = to_pi2("REOPENED")
    assert "entered in error" in alert
    assert "/workspace/signals/" in alert  # acknowledge again
    clock.advance(hours=3, minutes=59)
    assert await handlers.escalate_due(store, ctx) == 0
    clock.advance(minutes=1)
    assert await handlers.escalate_due(store, ctx) == 1
    assert await handlers.escalate_due(store, ctx) == 0
    assert await send_all(worker) == 1
    assert [d.recipient for d in sender.sent[-1:]] == ["mm@x.org"]

    # resolved again: a new resolution, told once more; escalation stops again
    clock.advance(hours=1)
    second = resolved(envelope, clock, "haemoglobin 10.9 g/dL: back in range")
    assert await plan(store, ctx, second) == 2  # pi2, and mm who was told at level 1
    assert await plan(store, ctx, second) == 0
    assert await send_all(worker) == 2
    clock.advance(days=5)
    assert await handlers.escalate_due(store, ctx) == 0
    assert await send_all(worker) == 0

    assert sender.kinds(subject_id) == [
        "ESCALATED",
        "NCT-NOTIFY",
        "REOPENED",
        "RESOLVED",
        "RESOLVED",
        "RESOLVED",
    ]
    types = await stream_types(store, signal_of(envelope).signal_id)
    lifecycle_types = [t for t in types if not t.startswith("delivery")]
    assert lifecycle_types == ["opened", "resolved", "reopened", "escalated", "resolved"]
    assert types.count("delivery_succeeded") == 6


async def test_a_resolved_finding_reaches_the_digest_readers_in_their_digest() -> None:
    clock = ManualClock()  # 09:00; the digest hour is 07:00 UTC
    the_roster = roster().model_copy(
        update={"digest": Digest(roles=(Role.SUB_INVESTIGATOR,), hour_utc=7)}
    )
    ctx = context(the_roster, clock)
    store = store_for(ctx)
    sender = RecordingSender()
    finding = raised("S1", severity="finding", grade=1)
    await plan(store, ctx, finding)
    clock.advance(hours=22)  # 07:00 the next day: the finding's digest
    assert await send_due_digests(store, ctx) == 1
    clock.advance(hours=3)
    done = resolved(finding, clock, "haemoglobin 12.1 g/dL: back in range")
    assert await plan(store, ctx, done) == 1  # pi1 at once; sub1 in the next digest
    assert await plan(store, ctx, done) == 0
    clock.advance(days=1)
    assert await send_due_digests(store, ctx) == 1
    assert await send_due_digests(store, ctx) == 0
    assert await send_all(email_worker(store, sender, ctx)) == 4  # pi1: 2; sub1: 2 digests
    (now,) = [d for d in sender.sent if "RESOLVED" in d.subject_line]
    assert now.recipient == "pi1@x.org"
    digests = [d for d in sender.sent if "DIGEST" in d.subject_line]
    assert {d.recipient for d in digests} == {"sub1@x.org"}
    assert len(digests) == 2
    latest = max(digests, key=lambda d: "RESOLVED" in d.body_text)
    assert "RESOLVED: subject " + signal_of(finding).subject_id in latest.body_text
    assert "12.1 g/dL: back in range" in latest.body_text
