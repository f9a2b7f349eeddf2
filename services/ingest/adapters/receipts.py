"""Durable receipt in PostgreSQL: the raw message and the events it became, stored before
any answer (the ``ReceiptStore`` port).

``received_messages`` keeps each message verbatim and is append-only. ``ingest_outbox``
holds every event ingest owes the audit log; the re-drive step republishes the ones that
have not reached ``events`` by their deadline, so neither a broker that forgets (the dev
broker keeps messages in memory) nor a crash between receipt and publication loses them.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta

import asyncpg
import orjson

from services.ingest.adapters.receipt_writer import (
    GroupCommitWriter,
    Owned,
    Refused,
    claim_judge_and_move,
)
from services.ingest.domain.authorization import Decision, Ownership, Refusal
from services.ingest.handlers.ports import Claims, Outgoing, Receipt, StorageUnavailable
from shared.db.pool import DATABASE_ERRORS
from shared.db.receipts import (
    INSERT_FROM_ARRAYS,
    ReceiptRow,
    insert_receipt,
    insert_receipts,
    receipt_arrays,
)
from shared.eventstore.postgres import stored_event_sql


def receipt_row(
    receipt: Receipt, outgoing: Sequence[Outgoing], receipt_id: uuid.UUID
) -> ReceiptRow:
    return ReceiptRow(
        receipt_id=receipt_id,
        channel=receipt.channel,
        source=receipt.source,
        content_type=receipt.content_type,
        raw=receipt.raw,
        outcome=receipt.outcome,
        reason=receipt.reason,
        event_ids=tuple(item.event_id for item in outgoing),
        principal_source=receipt.principal_source,
        credential=receipt.credential,
        raw_truncated=receipt.raw_truncated,
    )


def _owe_sql(first: int) -> str:
    """The INSERT of owed events from the seven parameters of :func:`_owed_arrays`,
    numbered from ``first``; a resent message owes the same events: the first row stands.

    The rows go in in event id order (the same id in the order given): two transactions
    owing some of the same events (a message resent on two connections, or to two ingest
    instances, with others) then wait for each other's rows in one order, never in a
    cycle (a deadlock PostgreSQL would break by failing one of them)."""
    n = [f"${first + k}" for k in range(7)]
    return f"""INSERT INTO ingest_outbox (event_id, receipt_id, topic, key, value, headers,
               next_check_at)
           SELECT t.event_id, t.receipt_id, t.topic, t.key, t.value, t.headers::jsonb,
                  clock_timestamp() + {n[6]}::interval
           FROM unnest({n[0]}::uuid[], {n[1]}::uuid[], {n[2]}::text[], {n[3]}::bytea[],
                       {n[4]}::bytea[], {n[5]}::text[]) WITH ORDINALITY
               AS t(event_id, receipt_id, topic, key, value, headers, given)
           ORDER BY t.event_id, t.given
           ON CONFLICT (event_id) DO NOTHING"""


_OWE = _owe_sql(1)
# a group's receipts and the events they owe in one statement (one round trip); the
# outbox's foreign key is checked at the statement's end, once both are in
_KEEP_AND_OWE = f"WITH kept AS ({INSERT_FROM_ARRAYS})\n{_owe_sql(13)}"


def _owed_arrays(
    owed: Sequence[tuple[uuid.UUID, Sequence[Outgoing]]], deadline: timedelta
) -> list[object] | None:
    """The parameters of the owed events' INSERT, or None when nothing is owed."""
    items = [(receipt_id, item) for receipt_id, outgoing in owed for item in outgoing]
    if not items:
        return None
    return [
        [item.event_id for _, item in items],
        [receipt_id for receipt_id, _ in items],
        [item.topic for _, item in items],
        [item.key for _, item in items],
        [item.value for _, item in items],
        [orjson.dumps(item.headers).decode() for _, item in items],
        deadline,
    ]


async def owe(
    connection: asyncpg.Connection,
    owed: Sequence[tuple[uuid.UUID, Sequence[Outgoing]]],
    *,
    deadline: timedelta,
) -> None:
    """The events each receipt owes the audit log, in one statement (one row set, not a
    statement per row); a resent message owes the same events: the first row stands."""
    arguments = _owed_arrays(owed, deadline)
    if arguments is not None:
        await connection.execute(_OWE, *arguments)


async def keep_with_owed(
    connection: asyncpg.Connection,
    rows: Sequence[ReceiptRow],
    owed: Sequence[tuple[uuid.UUID, Sequence[Outgoing]]],
    *,
    deadline: timedelta,
) -> None:
    """Keep the receipts (new ids) and the events they owe, in one statement."""
    arguments = _owed_arrays(owed, deadline)
    if arguments is None:
        await insert_receipts(connection, rows)
        return
    await connection.execute(_KEEP_AND_OWE, *receipt_arrays(rows), *arguments)


async def record_receipt(
    connection: asyncpg.Connection,
    receipt: Receipt,
    outgoing: Sequence[Outgoing],
    *,
    deadline: timedelta,
    receipt_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Store the message and what it owes the audit log, in one transaction; a rejected
    message's dead letter names its ``receipt_id``, chosen before."""
    receipt_id = receipt_id or uuid.uuid4()
    async with connection.transaction():
        await insert_receipt(connection, receipt_row(receipt, outgoing, receipt_id))
        await owe(connection, [(receipt_id, outgoing)], deadline=deadline)
    return receipt_id


async def keep_owned(
    connection: asyncpg.Connection, group: Sequence[Owned], *, deadline: timedelta
) -> None:
    """Claim, judge and move for each request of ``group`` in turn (as if each came
    alone, one after the other), then keep every receipt with what it owes; inside the
    caller's transaction. Raises Refused when any request is refused."""
    await claim_judge_and_move(connection, group)
    await keep_with_owed(
        connection,
        [receipt_row(o.receipt, o.outgoing, o.receipt_id) for o in group],
        [(o.receipt_id, o.outgoing) for o in group],
        deadline=deadline,
    )


async def mark_published(connection: asyncpg.Connection, event_ids: Sequence[uuid.UUID]) -> None:
    await connection.execute(
        "UPDATE ingest_outbox SET published_at = clock_timestamp() WHERE event_id = ANY($1)",
        list(event_ids),
    )


# An owed event is settled once it is in the audit log, or once the rules service
# dead-lettered it (a poison record: its InputRejected is in the audit log instead).
_SETTLED = (
    f"({stored_event_sql('o.event_id')}"
    " OR EXISTS (SELECT 1 FROM dead_lettered_events d WHERE d.event_id = o.event_id))"
)


async def settle(connection: asyncpg.Connection) -> int:
    """Forget owed events that are settled (stored, or dead-lettered by the rules service,
    which the re-drive must never send again); returns how many."""
    result: str = await connection.execute(f"DELETE FROM ingest_outbox o WHERE {_SETTLED}")
    return int(result.rsplit(" ", 1)[-1])


async def unrecorded(connection: asyncpg.Connection) -> tuple[int, float | None]:
    """How many owed events are not settled yet, and the oldest one's age in seconds (by
    the database's clock)."""
    row = await connection.fetchrow(
        """SELECT count(*) AS n,
                  extract(epoch FROM clock_timestamp() - min(o.created_at))::float8 AS age
           FROM ingest_outbox o
           WHERE NOT """
        + _SETTLED
    )
    return row["n"], row["age"]


async def claim_overdue(
    connection: asyncpg.Connection, limit: int, *, deadline: timedelta
) -> list[Outgoing]:
    """Lock overdue owed events not settled and push their next check back
    (exponentially: a consumer that is merely slow is not flooded with copies)."""
    rows = await connection.fetch(
        """UPDATE ingest_outbox o
           SET redrives = redrives + 1,
               next_check_at = clock_timestamp() + $2::interval * power(2, least(redrives + 1, 6))
           WHERE event_id IN (
               SELECT event_id FROM ingest_outbox
               WHERE next_check_at <= clock_timestamp()
               ORDER BY next_check_at LIMIT $1 FOR UPDATE SKIP LOCKED)
             AND NOT """
        + _SETTLED
        + """
           RETURNING event_id, topic, key, value, headers::text AS headers""",
        limit,
        deadline,
    )
    return [
        Outgoing(
            row["event_id"],
            row["topic"],
            None if row["key"] is None else bytes(row["key"]),
            bytes(row["value"]),
            orjson.loads(row["headers"]),
        )
        for row in rows
    ]


class PostgresReceiptStore:
    """The receipt store on ``received_messages``, ``ingest_outbox`` and the ownership
    tables. Writes raise StorageUnavailable when the database is away (any of
    DATABASE_ERRORS: the sender is told to send again, never answered 500); the re-drive's
    reads let the database's errors through (the re-drive loop retries outages)."""

    def __init__(
        self, pool: asyncpg.Pool, *, redrive_after: timedelta, group_commit: bool = False
    ) -> None:
        """With ``group_commit``, requests are kept by :attr:`writer` (a task the caller
        runs and supervises) in groups; without it, each in a transaction of its own."""
        self._pool = pool
        self._deadline = redrive_after
        self.writer = (
            GroupCommitWriter(
                pool,
                keep=functools.partial(keep_owned, deadline=redrive_after),
                mark=mark_published,
            )
            if group_commit
            else None
        )

    async def record(
        self,
        receipt: Receipt,
        outgoing: Sequence[Outgoing],
        receipt_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        try:
            async with self._pool.acquire() as connection:
                return await record_receipt(
                    connection, receipt, outgoing, deadline=self._deadline, receipt_id=receipt_id
                )
        except DATABASE_ERRORS as error:
            raise StorageUnavailable(f"cannot record the message durably: {error}") from error

    async def record_owned(
        self,
        receipt: Receipt,
        outgoing: Sequence[Outgoing],
        *,
        claims: Claims,
        judge: Callable[[Ownership], Decision],
    ) -> list[Refusal]:
        if self.writer is not None:
            return await self.writer.submit(Owned(receipt, outgoing, claims, judge))
        owned = Owned(receipt, outgoing, claims, judge)
        try:
            async with self._pool.acquire() as connection, connection.transaction():
                await keep_owned(connection, [owned], deadline=self._deadline)
        except Refused as refused:
            return refused.refusals
        except DATABASE_ERRORS as error:
            raise StorageUnavailable(f"cannot record the message durably: {error}") from error
        return []

    async def mark_published(self, event_ids: Sequence[uuid.UUID]) -> None:
        if self.writer is not None:  # a hint: written after the writer's next group
            self.writer.mark_published(event_ids)
            return
        try:
            async with self._pool.acquire() as connection:
                await mark_published(connection, event_ids)
        except DATABASE_ERRORS as error:
            raise StorageUnavailable(f"cannot mark events published: {error!r}") from error

    async def settle(self) -> int:
        async with self._pool.acquire() as connection:
            return await settle(connection)

    @asynccontextmanager
    async def claim_overdue(self, limit: int) -> AsyncIterator[list[Outgoing]]:
        async with self._pool.acquire() as connection, connection.transaction():
            yield await claim_overdue(connection, limit, deadline=self._deadline)

    async def unrecorded(self) -> tuple[int, float | None]:
        async with self._pool.acquire() as connection:
            return await unrecorded(connection)
