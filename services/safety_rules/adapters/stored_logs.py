"""Whether a partition's log is still the one a stored position was recorded from.

A memory-only development broker (Tansu) that restarts forgets its logs, and answers a
fetch beyond a log's end with no records and no error where Kafka answers
OffsetOutOfRange; its ListOffsets "latest" also undercounts a log whose last batch holds
several records (it answers that batch's base offset plus one). So the end of a log is
taken from a fetch's high-water mark, and the record just before a stored position is read
and looked up in the audit log: a log too short to hold it was lost, one whose record
there is an event the audit log does not hold is a new log.
"""

from __future__ import annotations

import asyncio
import enum
import uuid
from collections.abc import Callable, Mapping

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.eventstore import PostgresEventStore
from shared.kafka_security import kafka_client_options
from shared.settings import CommonSettings

# the id of the event a consumed record is (topic, value, headers); None when it is none
EventIdOf = Callable[[str, bytes, tuple[tuple[str, bytes], ...]], uuid.UUID | None]
Headers = tuple[tuple[str, bytes], ...]
# how long the records before the stored positions may take to read, at most
PROBE_SECONDS = 5.0


class LogVerdict(enum.Enum):
    """What the broker's log of a partition is, against a position stored from it."""

    KEPT = "kept"  # the record before the position is one the audit log holds
    LOST = "lost"  # the log ends before the position: the broker lost what it held
    REPLACED = "replaced"  # the record there is an event the audit log does not hold


async def judge_logs(
    pool: asyncpg.Pool,
    settings: CommonSettings,
    event_id_of: EventIdOf,
    positions: Mapping[TopicPartition, int],
) -> dict[TopicPartition, LogVerdict]:
    """A verdict for each partition whose log could be told apart; the others (the record
    is no event, or the broker did not answer in time) are left out. Raises what the broker
    or the database raise."""
    doubtful = {tp: position for tp, position in positions.items() if position > 0}
    if not doubtful:
        return {}
    last = await _records_before(settings, doubtful)
    verdicts = {tp: LogVerdict.LOST for tp, record in last.items() if record is None}
    ids = {
        tp: event_id
        for tp, record in last.items()
        if record is not None and (event_id := event_id_of(tp.topic, *record)) is not None
    }
    held = await _held(pool, list(ids.values()))
    for tp, event_id in ids.items():
        verdicts[tp] = LogVerdict.KEPT if event_id in held else LogVerdict.REPLACED
    return verdicts


async def _records_before(
    settings: CommonSettings, positions: Mapping[TopicPartition, int]
) -> dict[TopicPartition, tuple[bytes, Headers] | None]:
    """The value and headers of the record just before each position; None where the log
    ends before it (its high-water mark is not past it)."""
    reader = AIOKafkaConsumer(
        **kafka_client_options(settings),
        enable_auto_commit=False,
        auto_offset_reset="none",
        fetch_max_wait_ms=100,
    )
    found: dict[TopicPartition, tuple[bytes, Headers] | None] = {}
    await reader.start()
    try:
        reader.assign(list(positions))
        for tp, position in positions.items():
            reader.seek(tp, position - 1)
        pending = set(positions)
        # what is not found by then stays undecided
        deadline = asyncio.get_running_loop().time() + PROBE_SECONDS
        while pending and asyncio.get_running_loop().time() < deadline:
            batches = await reader.getmany(*pending, timeout_ms=200)
            for tp, records in batches.items():
                for record in records:
                    if record.offset == positions[tp] - 1:
                        found[tp] = (record.value or b"", tuple(record.headers or ()))
                        pending.discard(tp)
            for tp in list(pending):
                end = reader.highwater(tp)
                if end is not None and end < positions[tp]:
                    found[tp] = None
                    pending.discard(tp)
    finally:
        await reader.stop()
    return found


async def _held(pool: asyncpg.Pool, event_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these events the audit log holds, or refused (dead-lettered)."""
    if not event_ids:
        return set()
    held = await PostgresEventStore(pool).stored_ids(event_ids)
    rows = await pool.fetch(
        "SELECT event_id FROM dead_lettered_events WHERE event_id = ANY($1::uuid[])",
        [event_id for event_id in event_ids if event_id not in held],
    )
    return held | {row["event_id"] for row in rows}
