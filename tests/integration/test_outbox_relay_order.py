"""The outbox relay publishes in the audit log's order where rows share a timestamp, even
when a batch ends inside such a group (the tie is broken by the event store's positions)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import asyncpg
import pytest
from faststream.kafka import KafkaBroker

from services.safety_rules.adapters.outbox_relay import OutboxRelay
from shared.events import Envelope, LabResultReported, wrap
from shared.eventstore import NewEvent, append

pytestmark = pytest.mark.integration

CREATED = datetime(2026, 6, 1, 12, tzinfo=UTC)


class RecordingBroker:
    """Takes every record at once, in the order it is handed over."""

    def __init__(self) -> None:
        self.values: list[bytes] = []

    async def publish(self, value: bytes, **_: Any) -> None:
        self.values.append(value)


def fact(n: int) -> Envelope:
    payload = LabResultReported(
        study_id="NCT-RELAY",
        subject_id="A",
        loinc_code="718-7",
        value=n,
        unit="g/dL",
        collected_at=datetime(2026, 6, 1, 9, n, tzinfo=UTC),
        source_message_id=f"M-{n}",
    )
    return wrap(payload, source="/tests")


async def test_rows_of_one_timestamp_go_out_in_log_order_across_batches(
    pool: asyncpg.Pool,
) -> None:
    events = [fact(n) for n in range(5)]
    async with pool.acquire() as connection, connection.transaction():
        await append(connection, [NewEvent(e) for e in events])
        # entered in the reverse order, all at one time: only the log can order them
        await connection.executemany(
            "INSERT INTO outbox (event_id, topic, key, value, created_at) "
            "VALUES ($1, 'topic', 'A', $2, $3)",
            [(e.id, e.to_json(), CREATED) for e in reversed(events)],
        )
    broker = RecordingBroker()
    relay = OutboxRelay(pool, cast(KafkaBroker, broker), batch_size=2)

    assert [await relay.relay_once() for _ in range(4)] == [2, 2, 1, 0]
    assert broker.values == [e.to_json() for e in events]
