"""``vigil rules explain`` reads a signal and its inputs back from the audit log."""

from __future__ import annotations

import asyncio
import subprocess
import uuid

import asyncpg
import pytest

from services.safety_rules.adapters.postgres import PostgresRulesUnitOfWork
from services.safety_rules.handlers.facts import handle_batch
from tests.integration.test_rules_tools import vigil
from tests.integration.test_store_and_rules import PACKS, enrolled, hb

pytestmark = pytest.mark.integration


async def explain(dsn: str, signal_id: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(vigil, dsn, "explain", signal_id)


async def test_explains_a_signal_in_words(fresh_dsn: str) -> None:
    connection = await asyncpg.connect(fresh_dsn)
    try:
        async with connection.transaction():
            outcome = await handle_batch(
                [enrolled("E1", "PKUPH-02"), hb("E1", "5.3", "mmol/L")],
                PostgresRulesUnitOfWork(connection),
                PACKS,
            )
    finally:
        await connection.close()
    (signal,) = outcome.signals

    done = await explain(fresh_dsn, str(signal.id))

    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "Rule anaemia-hb-le-9: Haemoglobin at or below 9 g/dL" in text
    assert "Haemoglobin was 5.3 mmol/L" in text
    assert "which is 8.54 g/dL" in text
    assert "site PKUPH-02" in text
    assert "lab result 718-7 = 5.3 mmol/L" in text
    assert "registry" in text  # where the rule comes from
    missing = await explain(fresh_dsn, str(uuid.uuid4()))
    assert missing.returncode == 1
    assert "no safety signal" in missing.stderr
