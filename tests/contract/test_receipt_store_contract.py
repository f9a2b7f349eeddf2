"""The ReceiptStore contract: PostgreSQL's store and the in-memory one behave alike.

Each test runs against both (``store_kind``); the PostgreSQL one on a migrated database
private to the test, as the services' tables are. What a test needs to see or change
outside the port (what is kept, the audit log settling an event, who owns what) goes
through a small harness per implementation.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import pytest

from services.ingest.adapters.in_memory import InMemoryReceiptStore
from services.ingest.adapters.receipts import PostgresReceiptStore
from services.ingest.domain.authorization import (
    Decision,
    Ownership,
    RecordKey,
    Refusal,
    SubjectOwnership,
)
from services.ingest.handlers.ports import Claims, Receipt, ReceiptStore
from shared.db.pool import create_pool
from tests.support.components import create_database, drop_database
from tests.support.intake import STUDY, owed, receipt
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

SUBJECT = (STUDY, "01-003")
RECORD = RecordKey(STUDY, "01-003", "observation", "LAB-1:718-7")


@dataclass(frozen=True)
class Kept:
    """A kept message as a test compares it."""

    raw: bytes
    outcome: str
    reason: str | None
    principal_source: str | None
    credential: str | None
    raw_truncated: bool
    event_ids: tuple[uuid.UUID, ...]


@dataclass
class Harness:
    """One implementation of the port, and what the tests read and change around it."""

    make: Callable[[timedelta], ReceiptStore]
    kept: Callable[[], Awaitable[dict[uuid.UUID, Kept]]]
    settle_in_audit_log: Callable[[list[uuid.UUID]], Awaitable[None]]
    owners: Callable[[], Awaitable[Ownership]]


def _kept(receipt: Receipt, event_ids: tuple[uuid.UUID, ...]) -> Kept:
    return Kept(
        receipt.raw,
        receipt.outcome,
        receipt.reason,
        receipt.principal_source,
        receipt.credential,
        receipt.raw_truncated,
        event_ids,
    )


async def _postgres(pool: asyncpg.Pool) -> Harness:
    async def kept() -> dict[uuid.UUID, Kept]:
        rows = await pool.fetch("SELECT * FROM received_messages")
        return {
            row["receipt_id"]: Kept(
                bytes(row["raw"]),
                row["outcome"],
                row["reason"],
                row["principal_source"],
                row["credential"],
                bool(row["raw_truncated"]),
                tuple(row["event_ids"]),
            )
            for row in rows
        }

    async def settle_in_audit_log(event_ids: list[uuid.UUID]) -> None:
        # the rules service's dead letter settles an owed event as the audit log does
        await pool.executemany(
            "INSERT INTO dead_lettered_events (event_id, rejection_id, origin, reason)"
            " VALUES ($1, $2, 'tests', 'settled by the test')",
            [(event_id, uuid.uuid4()) for event_id in event_ids],
        )

    async def owners() -> Ownership:
        subjects = await pool.fetch("SELECT * FROM ingest_subject_owners")
        records = await pool.fetch("SELECT * FROM ingest_record_owners")
        return Ownership(
            subjects={
                (r["study_id"], r["subject_id"]): SubjectOwnership(r["owner_source"], r["site_id"])
                for r in subjects
            },
            records={
                RecordKey(r["study_id"], r["subject_id"], r["kind"], r["identity"]): r[
                    "owner_source"
                ]
                for r in records
            },
        )

    return Harness(
        lambda deadline: PostgresReceiptStore(pool, redrive_after=deadline),
        kept,
        settle_in_audit_log,
        owners,
    )


def _in_memory() -> Harness:
    made: list[InMemoryReceiptStore] = []

    def make(deadline: timedelta) -> ReceiptStore:
        made.append(InMemoryReceiptStore(redrive_after=deadline))
        return made[-1]

    async def kept() -> dict[uuid.UUID, Kept]:
        return {k.receipt_id: _kept(k.receipt, k.event_ids) for s in made for k in s.receipts}

    async def settle_in_audit_log(event_ids: list[uuid.UUID]) -> None:
        for store in made:
            store.record_in_audit_log(event_ids)

    async def owners() -> Ownership:
        (store,) = made
        return Ownership(subjects=dict(store.subject_owners), records=dict(store.record_owners))

    return Harness(make, kept, settle_in_audit_log, owners)


@pytest.fixture(params=["postgresql", "in-memory"])
def server(request: pytest.FixtureRequest) -> str | None:
    """The session's PostgreSQL server (its administrator's DSN) for the PostgreSQL store,
    started only when a test runs against it; None for the in-memory store."""
    return request.getfixturevalue("postgres_dsn") if request.param == "postgresql" else None


@pytest.fixture
async def harness(server: str | None) -> AsyncIterator[Harness]:
    if server is None:
        yield _in_memory()
        return
    dsn = await create_database(server)
    pool = await create_pool(dsn)
    try:
        yield await _postgres(pool)
    finally:
        await pool.close()
        await drop_database(server, dsn)


def judged_by(decision: Decision, seen: list[Ownership] | None = None) -> Callable[..., Decision]:
    def judge(known: Ownership) -> Decision:
        if seen is not None:
            seen.append(known)
        return decision

    return judge


def claims_of(owner: str, site: str = "PKUPH-01") -> Claims:
    return Claims(owner, {SUBJECT: site}, {RECORD}, {SUBJECT})


# keeping


async def test_a_message_is_kept_verbatim_with_the_ids_of_the_events_it_owes(
    harness: Harness,
) -> None:
    store = harness.make(timedelta(minutes=5))
    records = [owed(), owed()]
    message = Receipt(
        "http-json",
        "10.1.2.3",
        "application/json",
        b"\x00\xff raw bytes, as sent",
        "rejected",
        reason="403 1 event(s) refused",
        principal_source="lab-a",
        credential="api-key:a",
        raw_truncated=True,
    )

    receipt_id = await store.record(message, records)

    assert await harness.kept() == {
        receipt_id: Kept(
            b"\x00\xff raw bytes, as sent",
            "rejected",
            "403 1 event(s) refused",
            "lab-a",
            "api-key:a",
            True,
            (records[0].event_id, records[1].event_id),
        )
    }


async def test_a_receipt_id_chosen_before_is_the_one_kept(harness: Harness) -> None:
    store = harness.make(timedelta(minutes=5))
    chosen = uuid.uuid4()

    assert await store.record(receipt(), [owed()], chosen) == chosen
    assert list(await harness.kept()) == [chosen]


async def test_a_message_that_owes_nothing_is_kept_all_the_same(harness: Harness) -> None:
    store = harness.make(timedelta(0))

    receipt_id = await store.record(receipt(b"{}"), [])

    assert (await harness.kept())[receipt_id].event_ids == ()
    assert await store.unrecorded() == (0, None)


async def test_an_event_owed_twice_is_owed_once_and_the_first_record_stands(
    harness: Harness,
) -> None:
    store = harness.make(timedelta(0))
    first = owed(b'{"first": true}')
    again = owed(b'{"again": true}')
    again = type(again)(first.event_id, again.topic, again.key, again.value, again.headers)

    await store.record(receipt(), [first])
    await store.record(receipt(), [again])

    assert len(await harness.kept()) == 2  # every message is kept, each time it comes
    async with store.claim_overdue(10) as overdue:
        assert overdue == [first]


# the re-drive


async def test_an_owed_event_is_not_overdue_before_its_deadline(harness: Harness) -> None:
    store = harness.make(timedelta(minutes=5))
    await store.record(receipt(), [owed()])

    async with store.claim_overdue(10) as overdue:
        assert overdue == []


async def test_an_overdue_event_is_claimed_with_its_record_as_it_was_owed(
    harness: Harness,
) -> None:
    store = harness.make(timedelta(0))
    record = owed()
    await store.record(receipt(), [record])

    async with store.claim_overdue(10) as overdue:
        assert overdue == [record]


async def test_a_claim_returns_at_most_its_limit(harness: Harness) -> None:
    store = harness.make(timedelta(0))
    await store.record(receipt(), [owed() for _ in range(5)])

    async with store.claim_overdue(3) as overdue:
        assert len(overdue) == 3


async def test_a_claimed_event_waits_exponentially_longer_before_the_next_claim(
    harness: Harness,
) -> None:
    store = harness.make(timedelta(seconds=0.3))
    record = owed()
    await store.record(receipt(), [record])

    async def claim() -> list[uuid.UUID]:
        async with store.claim_overdue(10) as overdue:
            return [item.event_id for item in overdue]

    assert await eventually(claim, timeout=10, what="the first claim") == [record.event_id]
    assert await claim() == []  # pushed back by 0.6 s, not claimed on the next round
    assert await eventually(claim, timeout=10, what="the second claim") == [record.event_id]


async def test_an_error_inside_a_claim_undoes_it(harness: Harness) -> None:
    store = harness.make(timedelta(0))
    record = owed()
    await store.record(receipt(), [record])

    async def publish_none() -> None:
        async with store.claim_overdue(10) as overdue:
            assert overdue == [record]
            raise LookupError("the broker took none")

    with pytest.raises(LookupError, match="the broker took none"):
        await publish_none()

    async with store.claim_overdue(10) as overdue:
        assert overdue == [record]


async def test_an_event_claimed_by_one_redrive_is_not_claimed_by_another_meanwhile(
    harness: Harness,
) -> None:
    store = harness.make(timedelta(0))
    first, second = owed(), owed()
    await store.record(receipt(), [first])

    async with store.claim_overdue(10) as one:
        await store.record(receipt(), [second])
        async with store.claim_overdue(10) as other:
            assert (one, other) == ([first], [second])


async def test_settled_events_are_forgotten_and_never_claimed_again(harness: Harness) -> None:
    store = harness.make(timedelta(0))
    settled, owing = owed(), owed()
    await store.record(receipt(), [settled, owing])
    await harness.settle_in_audit_log([settled.event_id])

    async with store.claim_overdue(10) as overdue:
        assert overdue == [owing]
    assert await store.settle() == 1
    assert await store.settle() == 0


async def test_what_is_unrecorded_counts_owed_events_until_they_are_settled(
    harness: Harness,
) -> None:
    store = harness.make(timedelta(minutes=5))
    first, second = owed(), owed()
    assert await store.unrecorded() == (0, None)

    await store.record(receipt(), [first, second])
    await store.mark_published([first.event_id, second.event_id])  # published is not settled
    count, age = await store.unrecorded()
    assert count == 2
    assert age is not None
    assert 0 <= age < 60

    await harness.settle_in_audit_log([first.event_id])
    assert (await store.unrecorded())[0] == 1


# ownership, judged in the receipt's transaction


async def test_a_request_is_judged_against_the_owners_it_just_claimed(harness: Harness) -> None:
    store = harness.make(timedelta(minutes=5))
    seen: list[Ownership] = []

    refusals = await store.record_owned(
        receipt(), [owed()], claims=claims_of("lab-a"), judge=judged_by(Decision(), seen)
    )

    assert refusals == []
    expected = Ownership(
        subjects={SUBJECT: SubjectOwnership("lab-a", "PKUPH-01")}, records={RECORD: "lab-a"}
    )
    assert seen == [expected]
    assert await harness.owners() == expected
    assert len(await harness.kept()) == 1


async def test_what_another_source_owns_stays_its_own(harness: Harness) -> None:
    store = harness.make(timedelta(minutes=5))
    await store.record_owned(receipt(), [], claims=claims_of("lab-a"), judge=judged_by(Decision()))
    seen: list[Ownership] = []

    await store.record_owned(
        receipt(),
        [],
        claims=claims_of("lab-b", site="OTHER-SITE"),
        judge=judged_by(Decision(), seen),
    )

    assert seen[0].subjects == {SUBJECT: SubjectOwnership("lab-a", "PKUPH-01")}
    assert seen[0].records == {RECORD: "lab-a"}


async def test_a_refused_request_claims_nothing_and_keeps_nothing(harness: Harness) -> None:
    store = harness.make(timedelta(minutes=5))
    refusal = Refusal(uuid.uuid4(), "forbidden-object", "observation_key", "not its own")

    refusals = await store.record_owned(
        receipt(), [owed()], claims=claims_of("lab-a"), judge=judged_by(Decision([refusal]))
    )

    assert refusals == [refusal]
    assert await harness.owners() == Ownership()
    assert await harness.kept() == {}
    assert await store.unrecorded() == (0, None)


async def test_a_decided_move_changes_the_subjects_site_with_the_receipt(
    harness: Harness,
) -> None:
    store = harness.make(timedelta(minutes=5))
    await store.record_owned(receipt(), [], claims=claims_of("lab-a"), judge=judged_by(Decision()))

    await store.record_owned(
        receipt(),
        [],
        claims=Claims("dm", {}, set(), {SUBJECT}),
        judge=judged_by(Decision(moves={SUBJECT: "PKUPH-02"})),
    )

    assert (await harness.owners()).subjects == {SUBJECT: SubjectOwnership("lab-a", "PKUPH-02")}
    assert len(await harness.kept()) == 2
