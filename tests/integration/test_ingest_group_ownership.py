"""The ownership claims of a group commit, made in a few statements for the whole group,
judge each request exactly as if it came alone, after the ones before it: a later request
sees the earlier ones' claims and moves, an earlier one never sees a later one's claims."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

import asyncpg
import pytest

from services.ingest.adapters.receipt_writer import Owned, Refused, claim_judge_and_move
from services.ingest.adapters.receipts import keep_owned, receipt_row
from services.ingest.domain.authorization import Decision, Ownership, claims, decide
from services.ingest.domain.principals import Principal
from services.ingest.handlers.intake import outgoing_event
from services.ingest.handlers.ports import Claims, Receipt
from shared.events import Envelope
from tests.support.intake import LAB_A, LAB_B, enrolment, lab_result, receipt

pytestmark = pytest.mark.integration

DEADLINE = timedelta(seconds=30)


def owned(
    envelopes: Sequence[Envelope],
    principal: Principal,
    seen: list[Ownership],
    kept: Receipt | None = None,
) -> Owned:
    """A request as intake submits it, whose judge notes what it was shown."""

    def judge(known: Ownership) -> Decision:
        seen.append(known)
        return decide(envelopes, principal, known)

    enrolled, records, touched = claims(envelopes)
    return Owned(
        kept or receipt(),
        [outgoing_event(envelope) for envelope in envelopes],
        Claims(principal.source, enrolled, records, touched),
        judge,
    )


def requests() -> list[tuple[list[Envelope], Principal]]:
    """A result before its subject's enrolment, the enrolment, a move, a correction of the
    result, and another source enrolling the same subject (last: it is refused)."""
    return [
        ([lab_result("S-1", value="8.4", message="R-1")], LAB_A),
        ([enrolment("S-1", site="SITE-A")], LAB_A),
        ([enrolment("S-1", site="SITE-C")], LAB_A),
        ([lab_result("S-1", value="9.1", message="R-1")], LAB_A),
        ([enrolment("S-1", site="SITE-B")], LAB_B),
    ]


async def owners(connection: asyncpg.Connection) -> list[tuple[object, ...]]:
    subjects = await connection.fetch(
        "SELECT study_id, subject_id, owner_source, site_id FROM ingest_subject_owners"
    )
    records = await connection.fetch(
        "SELECT study_id, subject_id, kind, identity, owner_source FROM ingest_record_owners"
    )
    return sorted(tuple(row) for row in [*subjects, *records])


async def test_a_group_judges_each_request_as_if_it_came_alone_after_the_ones_before(
    pool: asyncpg.Pool,
) -> None:
    made = requests()
    alone_seen: list[Ownership] = []
    alone_refused = []
    async with pool.acquire() as connection:
        outer = connection.transaction()  # undone after: the group starts afresh
        await outer.start()
        # one after the other, each in a transaction (a savepoint) of its own
        for envelopes, principal in made:
            try:
                async with connection.transaction():
                    await keep_owned(
                        connection, [owned(envelopes, principal, alone_seen)], deadline=DEADLINE
                    )
            except Refused as refused:
                alone_refused.append(refused.refusals)
        alone_owners = await owners(connection)
        await outer.rollback()

    assert [len(r) for r in alone_refused] == [1]  # lab-b may not enrol lab-a's subject
    group_seen: list[Ownership] = []
    async with pool.acquire() as connection:
        transaction = connection.transaction()
        await transaction.start()
        group = [owned(envelopes, principal, group_seen) for envelopes, principal in made]
        with pytest.raises(Refused) as refused:
            await claim_judge_and_move(connection, group)
        await transaction.rollback()

        # the same refusal (of the last request), after the same judgements
        assert [r.code for r in refused.value.refusals] == [r.code for r in alone_refused[0]]
        assert refused.value.refusals[0].event_id == made[-1][0][0].id
        assert group_seen == alone_seen
        # the first sees nothing yet (the later enrolment is hidden from it); the last sees
        # the subject where the third request moved it
        assert group_seen[0].subjects == {}
        assert group_seen[-1].subjects[("NCT05262686", "S-1")].site_id == "SITE-C"

        # without the refused one, the group leaves the owners one after the other left
        async with connection.transaction():
            await keep_owned(
                connection,
                [owned(envelopes, principal, []) for envelopes, principal in made[:-1]],
                deadline=DEADLINE,
            )
        assert await owners(connection) == alone_owners


async def test_two_sources_claiming_one_new_subject_in_one_group_the_first_owns_it(
    pool: asyncpg.Pool,
) -> None:
    first = owned([enrolment("S-2", site="SITE-A")], LAB_A, [])
    second = owned([enrolment("S-2", site="SITE-B")], LAB_B, [])
    async with pool.acquire() as connection:
        with pytest.raises(Refused) as refused:
            async with connection.transaction():
                await keep_owned(connection, [first, second], deadline=DEADLINE)
        assert [(r.code, r.field) for r in refused.value.refusals] == [
            ("forbidden-object", "subject_id")
        ]
        # the writer then keeps each alone: the first is kept and owns it, the second refused
        async with connection.transaction():
            await keep_owned(connection, [first], deadline=DEADLINE)
        with pytest.raises(Refused):
            async with connection.transaction():
                await keep_owned(connection, [second], deadline=DEADLINE)
        assert await owners(connection) == [("NCT05262686", "S-2", "lab-a", "SITE-A")]


async def test_two_members_of_a_group_owing_the_same_event_owe_it_once(
    pool: asyncpg.Pool,
) -> None:
    # a message resent before the first copy was answered: the same content, the same
    # event id; the outbox row of the first copy stands
    result = lab_result("S-3", message="R-3")
    first = owned([result], LAB_A, [])
    second = owned([result], LAB_A, [])
    async with pool.acquire() as connection, connection.transaction():
        await keep_owned(connection, [first, second], deadline=DEADLINE)
    rows = await pool.fetch("SELECT event_id, receipt_id FROM ingest_outbox")
    assert [(row["event_id"], row["receipt_id"]) for row in rows] == [(result.id, first.receipt_id)]
    # both messages are kept, each naming the events it owes
    kept = await pool.fetch("SELECT receipt_id, event_ids FROM received_messages")
    assert sorted((row["receipt_id"], row["event_ids"]) for row in kept) == sorted(
        [(first.receipt_id, [result.id]), (second.receipt_id, [result.id])]
    )


async def test_a_group_keeps_each_receipt_as_it_would_alone(pool: asyncpg.Pool) -> None:
    # a receipt owing nothing, one owing two events, one rejected with a reason: kept in
    # one statement, each row as the statement of one receipt keeps it
    quiet = replace(receipt(b"quiet"), principal_source="lab-a", credential="api-key:a")
    two = replace(receipt(b"two"), raw_truncated=True)
    refused = replace(receipt(b"refused"), outcome="rejected", reason="403 refused")
    owing = [lab_result("S-4", message="R-4"), lab_result("S-5", message="R-5")]
    group = [
        owned([], LAB_A, [], quiet),
        owned(owing, LAB_A, [], two),
        owned([], LAB_A, [], refused),
    ]
    async with pool.acquire() as connection, connection.transaction():
        await keep_owned(connection, group, deadline=DEADLINE)
    columns = (
        "receipt_id, channel, source, content_type, raw, raw_sha256, outcome, reason, "
        "event_ids, principal_source, credential, raw_truncated"
    )
    grouped = sorted(
        tuple(row) for row in await pool.fetch(f"SELECT {columns} FROM received_messages")
    )
    expected = []
    for member in group:
        row = receipt_row(member.receipt, member.outgoing, member.receipt_id)
        expected.append(
            (
                row.receipt_id,
                row.channel,
                row.source,
                row.content_type,
                row.raw,
                hashlib.sha256(row.raw).digest(),
                row.outcome,
                row.reason,
                list(row.event_ids),
                row.principal_source,
                row.credential,
                row.raw_truncated or None,
            )
        )
    assert grouped == sorted(expected)
