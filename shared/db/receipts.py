"""The receipt store, ``received_messages``: every message verbatim, append-only.

The one place a raw message is kept (access-controlled: an auditor reads it there); every
other record of a message (dead letters, the audit log's InputRejected) refers to it by
receipt id, SHA-256 and size. Ingest keeps what it receives; the rules service keeps a
record it rejects from an input topic, which reached Vigil without passing ingest.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import asyncpg


@dataclass(frozen=True)
class ReceiptRow:
    """One kept message and the audit-log events it owes."""

    receipt_id: uuid.UUID
    channel: str
    source: str
    content_type: str | None
    raw: bytes
    outcome: Literal["accepted", "rejected"]
    reason: str | None
    event_ids: tuple[uuid.UUID, ...]
    principal_source: str | None = None
    """The authenticated source that sent it, when ingest knew (never a secret)."""
    credential: str | None = None
    """How that source was authenticated (``api-key:<id>``, ``mllp-certificate:...``)."""
    raw_truncated: bool = False
    """Only the first bytes were kept (the message was over a size limit)."""


_INSERT = """INSERT INTO received_messages (receipt_id, channel, source, content_type, raw,
                 raw_sha256, outcome, reason, event_ids, principal_source, credential,
                 raw_truncated)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"""


#: where the event ids stand in :func:`_arguments` ($9 of both statements)
_EVENT_IDS = 8


def _arguments(row: ReceiptRow) -> tuple[object, ...]:
    return (
        row.receipt_id,
        row.channel,
        row.source,
        row.content_type,
        row.raw,
        hashlib.sha256(row.raw).digest(),
        row.outcome,
        row.reason,
        list(row.event_ids),  # _EVENT_IDS
        row.principal_source,
        row.credential,
        row.raw_truncated or None,
    )


async def insert_receipt(connection: asyncpg.Connection, row: ReceiptRow) -> None:
    """Keep one message (its receipt id is new)."""
    await connection.execute(_INSERT, *_arguments(row))


INSERT_FROM_ARRAYS = """INSERT INTO received_messages (receipt_id, channel, source,
               content_type, raw, raw_sha256, outcome, reason, event_ids, principal_source,
               credential, raw_truncated)
           SELECT t.receipt_id, t.channel, t.source, t.content_type, t.raw, t.raw_sha256,
                  t.outcome, t.reason, t.event_ids::uuid[], t.principal_source,
                  t.credential, t.raw_truncated
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bytea[],
                       $6::bytea[], $7::text[], $8::text[], $9::text[], $10::text[],
                       $11::text[], $12::boolean[])
               AS t(receipt_id, channel, source, content_type, raw, raw_sha256, outcome,
                    reason, event_ids, principal_source, credential, raw_truncated)"""
"""Keep messages (their receipt ids are new) from the twelve arrays of
:func:`receipt_arrays` ($1 to $12): one row set, executed once (not once per row)."""


def receipt_arrays(rows: Sequence[ReceiptRow]) -> list[list[object]]:
    """The parameters of :data:`INSERT_FROM_ARRAYS`: one array per column."""
    columns = [list(column) for column in zip(*(_arguments(row) for row in rows), strict=True)]
    # each row's event ids travel as the text of a uuid array (arrays of arrays must be
    # rectangular); PostgreSQL reads it back as uuid[]
    columns[_EVENT_IDS] = [_uuid_array(row.event_ids) for row in rows]
    return columns


async def insert_receipts(connection: asyncpg.Connection, rows: Sequence[ReceiptRow]) -> None:
    """Keep messages (their receipt ids are new) with one statement."""
    if rows:
        await connection.execute(INSERT_FROM_ARRAYS, *receipt_arrays(rows))


def _uuid_array(ids: Sequence[uuid.UUID]) -> str:
    return "{" + ",".join(str(event_id) for event_id in ids) + "}"


async def keep_receipts(connection: asyncpg.Connection, rows: Sequence[ReceiptRow]) -> None:
    """Keep messages whose receipt ids derive from what they are: one already kept (its
    batch consumed again) is left as it is, the table being append-only."""
    await connection.executemany(
        _INSERT + " ON CONFLICT (receipt_id) DO NOTHING", [_arguments(row) for row in rows]
    )
