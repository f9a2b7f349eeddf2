"""The notifier's catch-up from the audit log, on a real PostgreSQL and SMTP server: what
Kafka never brought is answered once, what the fast path answered is not answered again,
whatever the order, the number of instances or a broken event."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from services.notifier import metrics
from services.notifier.adapters import signal_log
from services.notifier.domain.roster import Digest, Role, Roster
from services.notifier.entrypoints.catch_up import SignalCatchUp, sample_behind
from services.notifier.handlers import NotifierContext
from shared.events import (
    DataQualityIssueRaised,
    Envelope,
    SafetySignalAmended,
    SafetySignalEscalated,
    SafetySignalReopened,
    SafetySignalResolved,
    SafetySignalRetracted,
    wrap,
)
from shared.eventstore import NewEvent, append
from shared.supervision import Supervisor
from tests.support.mail import MailCatcher
from tests.support.notifier import (
    STUDY,
    T0,
    ManualClock,
    context,
    email_worker,
    lifecycle,
    plan,
    raised,
    roster,
    signal_of,
    stream_types,
)

pytestmark = pytest.mark.integration


async def record(pool: asyncpg.Pool, *envelopes: Envelope) -> list[int]:
    """Append signal events to the audit log as the rules service does (their outbox rows
    and Kafka play no part here); returns their positions."""
    async with pool.acquire() as connection, connection.transaction():
        appended = await append(connection, [NewEvent(envelope) for envelope in envelopes])
    return [a.position for a in appended]


def catch_up(pool: asyncpg.Pool, ctx: NotifierContext, *, grace: float = 0.0) -> SignalCatchUp:
    return SignalCatchUp(pool, ctx, grace_seconds=grace, poll_seconds=1.0, batch_size=5)


async def catch_up_all(runner: SignalCatchUp, supervisor: Supervisor | None = None) -> int:
    """Rounds until one reads nothing; returns how many events were read."""
    progress = None if supervisor is None else supervisor.watch(f"catch-up-{uuid.uuid4()}")
    total = 0
    while read := await runner.step(progress):
        total += read
    return total


async def footprint(pool: asyncpg.Pool) -> dict[str, list[tuple[Any, ...]]]:
    """Everything the notifier's answers leave: planned messages, its events in the log,
    items held for digests."""
    deliveries = await pool.fetch(
        "SELECT signal_id, purpose, person_id, channel, status FROM deliveries ORDER BY 1, 2, 3"
    )
    events = await pool.fetch(
        "SELECT stream_id, type FROM events WHERE source = '/vigil/notifier' ORDER BY position"
    )
    held = await pool.fetch("SELECT signal_id, person_id, item FROM digest_items ORDER BY 1, 2, 3")
    return {
        "deliveries": [tuple(row) for row in deliveries],
        "events": [tuple(row) for row in events],
        "digest_items": [tuple(row) for row in held],
    }


def digest_roster() -> Roster:
    """Findings wait for the sub-investigators' daily digest."""
    return roster().model_copy(
        update={"digest": Digest(roles=(Role.SUB_INVESTIGATOR,), hour_utc=7)}
    )


# what a_whole_life() calls for: a first alert, two worse grades, a resolution, a
# reopening, a withdrawal, a data-quality notice
EVERY_PURPOSE = {"raised", "grade-2", "grade-3", "resolved-1", "reopened-1", "withdrawn",
                 "data-quality"}  # fmt: skip


def a_whole_life() -> list[Envelope]:
    """Every kind of event the notifier answers, in an order the rules service can
    record them: a finding that worsens twice, resolves, reopens and is retracted, a
    protocol-threshold signal, and a result about a subject nobody enrolled."""
    finding = raised("S1", severity="finding", grade=1)
    signal = lifecycle(signal_of(finding))
    computed: dict[str, Any] = {"input_event_ids": (uuid.uuid4(),), "computed_values": {}}

    def at(hours: float, event: Any) -> Envelope:
        return wrap(event, source="/test/rules", time=T0 + timedelta(hours=hours))

    issue = DataQualityIssueRaised(
        study_id=STUDY,
        subject_id="X-404",
        issue="unknown-subject",
        detail="no enrolment for subject X-404",
        related_event_id=uuid.uuid4(),
    )
    return [
        finding,
        raised("S2", grade=3),
        at(1, SafetySignalEscalated(
            **signal, **computed, previous_grade=1, grade=2, observed_value=Decimal("8.1"),
            observed_unit="g/dL", collected_at=T0,
        )),
        at(2, SafetySignalAmended(
            **signal, **computed, reason="the laboratory corrected the result",
            previous_grade=2, grade=3, superseded_event_ids=(uuid.uuid4(),),
            observed_value=Decimal("7.4"), observed_unit="g/dL", collected_at=T0,
        )),
        at(3, SafetySignalResolved(
            **signal, reason="haemoglobin 12.1 g/dL: back in range",
            input_event_ids=(uuid.uuid4(),), collected_at=T0,
        )),
        at(4, SafetySignalReopened(**signal, reason="the 12.1 g/dL result was in error")),
        wrap(issue, source="/test/rules", time=T0),
        at(5, SafetySignalRetracted(**signal, reason="the result was entered in error")),
    ]  # fmt: skip


async def test_every_kind_of_signal_event_answered_again_changes_nothing(
    pool: asyncpg.Pool,
) -> None:
    ctx = context(digest_roster(), ManualClock())
    life = a_whole_life()
    for envelope in life[:-1]:
        await plan(pool, ctx, envelope)
    assert (await footprint(pool))["digest_items"]  # the finding waits in sub1's digest
    await plan(pool, ctx, life[-1])  # retracted: it leaves the digest
    answered = await footprint(pool)
    assert {row[1] for row in answered["deliveries"]} >= EVERY_PURPOSE
    assert answered["digest_items"] == []

    for envelope in life:  # each delivered again, after all that followed it
        assert await plan(pool, ctx, envelope) == 0
    assert await plan(pool, ctx, *life) == 0  # the whole life again, in one batch

    assert await footprint(pool) == answered


async def test_signal_events_kafka_never_brought_are_answered_from_the_log_once(
    pool: asyncpg.Pool, own_smtp: tuple[int, MailCatcher]
) -> None:
    port, mailbox = own_smtp
    ctx = context(roster())
    envelope = raised("S1", grade=3)
    missing = DataQualityIssueRaised(
        study_id=STUDY,
        subject_id=signal_of(envelope).subject_id,
        issue="missing-input",
        detail="no reference range",
        related_event_id=uuid.uuid4(),
    )  # every kind reaches someone (issue 15): the data manager, here the monitor for none
    await record(pool, wrap(missing, source="/test/rules", time=T0), envelope)
    before = metrics.CATCH_UP_DELIVERIES._value.get()

    assert await catch_up_all(catch_up(pool, ctx)) == 2

    assert metrics.CATCH_UP_DELIVERIES._value.get() == before + 3
    assert await email_worker(pool, port, ctx).send_due() == 3
    subject = signal_of(envelope).subject_id
    mails = mailbox.wait_for(lambda m: subject in str(m.message["Subject"]), count=3)
    assert sorted(to for m in mails for to in m.envelope_to) == [
        "mm@x.org",
        "pi1@x.org",
        "sub1@x.org",
    ]
    assert await catch_up_all(catch_up(pool, ctx)) == 0  # the checkpoint moved past it
    async with pool.acquire() as connection:
        assert await signal_log.checkpoint(connection) == await signal_log.log_head(connection)
        types = await stream_types(connection, signal_of(envelope).signal_id)
    assert types.count("opened") == 1


async def test_a_whole_life_read_from_the_log_gives_what_the_fast_path_gives(
    pool: asyncpg.Pool,
) -> None:
    ctx = context(digest_roster(), ManualClock())
    life = a_whole_life()
    await record(pool, *life)

    assert await catch_up_all(catch_up(pool, ctx)) == len(life)
    answered = await footprint(pool)
    assert {row[1] for row in answered["deliveries"]} >= EVERY_PURPOSE

    assert await plan(pool, ctx, *life) == 0  # then Kafka brings them all: nothing new
    assert await footprint(pool) == answered


async def test_what_the_fast_path_answered_is_not_sent_again_when_the_catch_up_reads_it(
    pool: asyncpg.Pool, own_smtp: tuple[int, MailCatcher]
) -> None:
    port, mailbox = own_smtp
    ctx = context(roster())
    envelope = raised("S1", grade=3)
    await record(pool, envelope)
    assert await plan(pool, ctx, envelope) == 2  # the fast path
    assert await email_worker(pool, port, ctx).send_due() == 2
    answered = await footprint(pool)
    before = metrics.CATCH_UP_DELIVERIES._value.get()

    assert await catch_up_all(catch_up(pool, ctx)) == 1  # read, and found answered

    assert await footprint(pool) == answered
    assert metrics.CATCH_UP_DELIVERIES._value.get() == before
    assert await email_worker(pool, port, ctx).send_due() == 0
    subject = signal_of(envelope).subject_id
    assert len(mailbox.matching(lambda m: subject in str(m.message["Subject"]))) == 2


async def test_an_event_younger_than_the_grace_period_is_left_to_the_fast_path(
    pool: asyncpg.Pool,
) -> None:
    ctx = context(roster())
    early, late = raised("S1"), raised("S2")
    (early_position,) = await record(pool, early)
    await asyncio.sleep(0.05)
    await record(pool, late)

    assert await catch_up(pool, ctx, grace=3600).step() == 0

    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 0
    async with pool.acquire() as connection:
        assert await signal_log.checkpoint(connection) == early_position - 1
    await sample_behind(pool)
    assert metrics.CATCH_UP_PENDING_EVENTS._value.get() == 2
    assert metrics.CATCH_UP_BEHIND_SECONDS._value.get() >= 0.05

    assert await catch_up_all(catch_up(pool, ctx, grace=0)) == 2  # once they are old enough
    await sample_behind(pool)
    assert metrics.CATCH_UP_PENDING_EVENTS._value.get() == 0
    assert metrics.CATCH_UP_BEHIND_SECONDS._value.get() == 0


async def test_two_instances_and_the_fast_path_at_once_answer_each_signal_once(
    pool: asyncpg.Pool,
) -> None:
    ctx = context(roster())
    signals = [raised("S1") for _ in range(12)]
    await record(pool, *signals)

    await asyncio.gather(
        catch_up_all(catch_up(pool, ctx)),
        catch_up_all(catch_up(pool, ctx)),
        plan(pool, ctx, *signals),  # the fast path, at the same time
        plan(pool, ctx, *reversed(signals)),  # and a second notifier's consumer
    )

    assert await pool.fetchval("SELECT count(*) FROM deliveries") == 2 * len(signals)
    opened = await pool.fetch(
        "SELECT stream_id, count(*) AS n FROM events WHERE type = $1 GROUP BY stream_id",
        "org.vigil.notification.opened.v1",
    )
    assert len(opened) == len(signals)
    assert {row["n"] for row in opened} == {1}


class BreaksOnStudy(dict[str, Roster]):
    """The rosters, with a bug that shows for one study's signals only."""

    def get(self, key: str, default: Any = None) -> Any:
        if key == "NCT-BROKEN":
            raise LookupError("a bug in the notifier")
        return super().get(key, default)


async def test_an_event_the_handlers_cannot_answer_is_skipped_recorded_and_the_rest_answered(
    pool: asyncpg.Pool,
) -> None:
    healthy = context(roster())
    rosters: Mapping[str, Roster] = BreaksOnStudy(healthy.rosters)
    ctx = dataclasses.replace(healthy, rosters=rosters)
    first, broken, last = raised("S1"), raised("S1", study_id="NCT-BROKEN"), raised("S2")
    positions = await record(pool, first, broken, last)

    async with Supervisor("test-catch-up") as supervisor:
        progress = supervisor.watch("catch-up")
        assert await catch_up(pool, ctx).step(progress) == 3
        (report,) = supervisor.report()

    assert report["item_failures"] == 1
    assert report["failing_items"][0]["item"] == f"event {positions[1]}"
    planned = await pool.fetch("SELECT DISTINCT signal_id FROM deliveries")
    assert {row["signal_id"] for row in planned} == {
        signal_of(first).signal_id,
        signal_of(last).signal_id,
    }
    skipped = await pool.fetch(
        "SELECT payload FROM events WHERE stream_id = 'projection-notifier.catch-up'"
    )
    assert len(skipped) == 1
    assert f'"position": {positions[1]}' in skipped[0]["payload"]
    assert "LookupError at tests/integration/test_notifier_catch_up.py" in skipped[0]["payload"]
    async with pool.acquire() as connection:
        assert await signal_log.checkpoint(connection) == positions[2]


async def test_a_round_reads_through_the_partial_index_not_the_whole_log(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as connection, connection.transaction():
        # on a tiny table a sequential scan is cheaper: forbid it to see the index is usable
        await connection.execute("SET LOCAL enable_seqscan = off")
        plan_rows = await connection.fetch(f"EXPLAIN {signal_log.READ_CAUSES}", 0, 10, 5, 10.0)
    text = "\n".join(row[0] for row in plan_rows)
    assert "events_notifier_causes_idx" in text
