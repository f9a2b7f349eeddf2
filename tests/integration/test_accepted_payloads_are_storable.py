"""Property: whatever a payload type accepts can be stored, encoded and judged.

Hypothesis draws batches of raw payloads of every registered event type (facts, signals,
notification events, rejected input), with hostile values mixed in. Each payload the type
accepts must then survive everything a record meets on its way: the envelope as published
and parsed back (the rules' own parsing), the real batch handler judging it with the
study's real rule pack, the real event store appending it to PostgreSQL (COPY, the jsonb
columns, the hash chain), the hash PostgreSQL computes for verification matching the one
computed in Python, the stored payload read back by the rules, and the subject-state
projection that moves in the same transaction. Each batch is rolled back afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from services.safety_rules.adapters.postgres import HistoryCache, PostgresRulesUnitOfWork
from services.safety_rules.adapters.rule_pack_files import load_rule_packs
from services.safety_rules.adapters.subject_state_projection import SubjectStateProjection
from services.safety_rules.handlers.facts import handle_batch
from shared.events import (
    Envelope,
    EventPayload,
    payload_class,
    wrap,
)
from shared.eventstore.canonical import CANONICAL_SQL
from shared.projections import ProjectionRunner
from tests.support.payload_strategies import accepted_batches
from tests.support.services import REPO

pytestmark = pytest.mark.integration

PACKS = load_rule_packs(REPO / "studies")


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A loop of the test's own: Hypothesis calls the test body synchronously."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def connection(loop: asyncio.AbstractEventLoop, fresh_dsn: str) -> Iterator[asyncpg.Connection]:
    connection = loop.run_until_complete(asyncpg.connect(fresh_dsn))
    yield connection
    loop.run_until_complete(connection.close())


async def store_and_judge(connection: asyncpg.Connection, payloads: list[EventPayload]) -> None:
    envelopes = [wrap(payload, source="/tests/property") for payload in payloads]
    # as published and as the rules parse a record
    parsed = [Envelope.from_json(envelope.to_json()) for envelope in envelopes]
    assert [envelope.id for envelope in parsed] == [envelope.id for envelope in envelopes]
    transaction = connection.transaction()
    await transaction.start()
    try:
        before = await connection.fetchval("SELECT coalesce(max(position), 0) FROM events")
        await handle_batch(parsed, PostgresRulesUnitOfWork(connection, HistoryCache()), PACKS)
        # the subject state moves with the facts, in the consumer's same transaction
        await ProjectionRunner(None, SubjectStateProjection()).catch_up_in(connection)  # type: ignore[arg-type]
        rows = await connection.fetch(
            f"SELECT position, type, payload_json, "
            f"pg_catalog.sha256(prev_hash || {CANONICAL_SQL}) = hash AS hash_ok "
            "FROM events WHERE position > $1 ORDER BY position",
            before,
        )
        assert len(rows) >= len({envelope.id for envelope in envelopes})
        for row in rows:
            assert row["hash_ok"], f"position {row['position']}: verify would call it altered"
            # what the rules read back of a stored event
            payload_class(row["type"]).model_validate(orjson.loads(row["payload_json"]))
    finally:
        await transaction.rollback()


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payloads=accepted_batches())
def test_every_payload_a_type_accepts_is_stored_encoded_and_judged(
    loop: asyncio.AbstractEventLoop, connection: asyncpg.Connection, payloads: list[EventPayload]
) -> None:
    loop.run_until_complete(store_and_judge(connection, payloads))
