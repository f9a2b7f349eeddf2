"""Found while breaking issue 16's shared decoding consumer from outside: garbage on
every input topic of the rules service. Each record is recorded as rejected input in the
audit log (its origin named, its reason naming the problem and no value), the good
result after it is stored, and the service stays ready."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import pytest

from shared.events.topics import (
    ADVERSE_EVENTS,
    DATA_QUALITY,
    DEAD_LETTERS,
    LAB_RESULTS,
    MEDICATIONS,
    SUBJECTS,
)
from tests.e2e.test_found_i16_rules_wrong_topic import good_result, publish, rejected_origins
from tests.support.private_stack import private_stack
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
TOPICS = (SUBJECTS, LAB_RESULTS, ADVERSE_EVENTS, MEDICATIONS, DATA_QUALITY, DEAD_LETTERS)


async def test_garbage_on_every_rules_topic_is_rejected_input_and_the_rules_go_on(
    tmp_path: Path, fresh_dsn: str
) -> None:
    marker = f"Jane-Doe-{uuid.uuid4().hex[:6]}"
    subject = f"01-{uuid.uuid4().hex[:4]}"
    good = good_result(subject)
    garbage = [(topic, b"k", b'{"subject_name": "' + marker.encode() + b'"') for topic in TOPICS]
    async with private_stack(tmp_path, fresh_dsn, start=(("safety_rules", "rules"),)) as stack:
        connection = await asyncpg.connect(fresh_dsn)
        try:
            origins = await publish(
                stack.broker.bootstrap, [*garbage, (LAB_RESULTS, good.key or b"", good.to_json())]
            )
            await eventually(
                lambda: connection.fetchval("SELECT 1 FROM events WHERE event_id = $1", good.id),
                timeout=60,
                what="the good result stored",
            )

            async def all_rejected() -> bool:
                return set(origins[:-1]) <= await rejected_origins(connection)

            try:
                await eventually(all_rejected, timeout=30, what="every garbage record rejected")
            except AssertionError:
                missing = set(origins[:-1]) - await rejected_origins(connection)
                raise AssertionError(f"not recorded as rejected input: {missing}") from None
            texts = await connection.fetch(
                "SELECT payload_json FROM events WHERE stream_id = 'rejected-input'"
            )
            assert all(marker not in row["payload_json"] for row in texts)
            assert (await stack.ready("rules"))[0] == 200
        finally:
            await connection.close()
