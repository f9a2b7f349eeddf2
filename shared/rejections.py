"""A Kafka record a service refuses: kept verbatim in the receipt store, and a dead letter
that refers to it on the dead-letter topic.

The record reached Vigil without passing ingest (a partner published it, or a service
could not use what another published), so no receipt exists yet: it is kept first, under
a receipt id derived from where it was and what it holds (a batch consumed again keeps it
once), and only the reference travels on. The raw record may carry names and record
numbers; it goes no further than the access-controlled receipt store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from faststream.kafka import KafkaBroker

from shared.db.receipts import ReceiptRow, keep_receipts
from shared.events.dead_letters import (
    KAFKA_CHANNEL,
    DeadLetter,
    ReceiptReference,
    dead_letter,
    kafka_receipt_id,
    study_named_in,
)
from shared.events.topics import DEAD_LETTERS


@dataclass(frozen=True)
class KeptRejection:
    """A refused record as kept (its receipt) and as dead-lettered (a reference to it)."""

    receipt: ReceiptRow
    letter: DeadLetter


def kept_record(
    raw: bytes,
    *,
    reason: str,
    origin: str,
    rejected_by: str,
    content_type: str | None,
    kept_reason: str | None = None,
) -> KeptRejection:
    """The receipt of a record (with ``kept_reason``, else ``reason``) and the dead letter
    (with ``reason``, which names fields and problems, never values) that refers to it."""
    reference = ReceiptReference.of(kafka_receipt_id(origin, raw), raw, KAFKA_CHANNEL)
    letter = dead_letter(
        reference,
        reason=reason,
        origin=origin,
        rejected_by=rejected_by,
        study_id=study_named_in(raw),
    )
    receipt = ReceiptRow(
        receipt_id=reference.receipt_id,
        channel=KAFKA_CHANNEL,
        source=origin,
        content_type=content_type,
        raw=raw,
        outcome="rejected",
        reason=kept_reason or reason,
        event_ids=(letter.event(fallback_origin=origin).content_id(),),
    )
    return KeptRejection(receipt, letter)


async def keep_raw(pool: asyncpg.Pool, receipts: Sequence[ReceiptRow]) -> None:
    """Keep records verbatim in the receipt store (a record kept before is left as is)."""
    if receipts:
        async with pool.acquire() as connection:
            await keep_receipts(connection, receipts)


async def keep_and_dead_letter(
    broker: KafkaBroker, pool: asyncpg.Pool, kept: Sequence[KeptRejection]
) -> None:
    """Keep each record, then publish its dead letter: a dead letter never refers to a
    receipt that is not there. Returns once the broker took every one."""
    await keep_raw(pool, [item.receipt for item in kept])
    await asyncio.gather(
        *(
            broker.publish(item.letter.value, topic=DEAD_LETTERS, headers=item.letter.headers)
            for item in kept
        )
    )
