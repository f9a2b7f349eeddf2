"""Found while breaking issue 16's shared decoding consumer from outside: a valid Vigil
event that is no input of the rules, on one of their input topics. A safety signal on the
lab-results topic is a producer's mistake (or a forgery: only the rules service raises
signals). The rules service stores it in the audit log as if it had raised it, where the
notifier's catch-up and the watchdog read signals. An operator expects what the rules
cannot take as input to be dead-lettered with a reason, like any record it cannot decode,
and never recorded as a signal."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shared.events import Envelope, LabResultReported, wrap
from shared.events.topics import LAB_RESULTS, SUBJECTS
from tests.integration.test_found_i16_notifier_garbage import publish
from tests.support.notifier import T0, raised
from tests.support.private_stack import private_stack
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
STUDY = "NCT05262686"


def good_result(subject: str) -> Envelope:
    """A lab result in range, as ingest publishes it."""
    return wrap(
        LabResultReported(
            study_id=STUDY, subject_id=subject, loinc_code="718-7", value=Decimal("12.5"),
            unit="g/dL", collected_at=T0, source_message_id=f"LAB-{uuid.uuid4().hex[:8]}",
        ),
        source="/tests/found",
    )  # fmt: skip


async def rejected_origins(connection: asyncpg.Connection) -> set[str]:
    rows = await connection.fetch(
        "SELECT payload_json FROM events WHERE stream_id = 'rejected-input' ORDER BY position"
    )
    payloads: list[dict[str, Any]] = [json.loads(row["payload_json"]) for row in rows]
    return {str(p.get("origin")) for p in payloads}


@pytest.mark.parametrize("topic", [LAB_RESULTS, SUBJECTS])
async def test_a_signal_on_an_input_topic_is_dead_lettered_not_recorded(
    tmp_path: Path, fresh_dsn: str, topic: str
) -> None:
    subject = f"01-{uuid.uuid4().hex[:4]}"
    forged = raised("PKUPH-01", study_id=STUDY, subject_id=subject)
    good = good_result(subject)
    async with private_stack(tmp_path, fresh_dsn, start=(("safety_rules", "rules"),)) as stack:
        connection = await asyncpg.connect(fresh_dsn)
        try:
            origins = await publish(
                stack.broker.bootstrap,
                [
                    (topic, forged.key or b"", forged.to_json()),
                    (LAB_RESULTS, good.key or b"", good.to_json()),
                ],
            )
            await eventually(
                lambda: connection.fetchval("SELECT 1 FROM events WHERE event_id = $1", good.id),
                timeout=60,
                what="the good result stored",
            )

            async def forged_rejected() -> bool:
                return origins[0] in await rejected_origins(connection)

            stored_as = await connection.fetchval(
                "SELECT type FROM events WHERE event_id = $1", forged.id
            )
            assert stored_as is None, f"the signal on {topic} was recorded as {stored_as}"
            await eventually(forged_rejected, timeout=30, what="the signal dead-lettered")
        finally:
            await connection.close()
