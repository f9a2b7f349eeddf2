"""Two rules-service instances in one consumer group: every event once, one valid chain."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.db.pool import create_pool
from shared.events.topics import LAB_RESULTS
from shared.eventstore.verify import verify_chain
from tests.e2e.test_faults import lab_event, publish_direct
from tests.support import components
from tests.support.services import service_env, start_service
from tests.support.waiting import eventually
from vigil.devstack.ports import free_port

pytestmark = pytest.mark.integration


async def test_two_rules_instances_split_the_work_and_keep_the_chain(
    tmp_path: Path, fresh_dsn: str, smtp_server: tuple[int, object]
) -> None:
    dsn = fresh_dsn
    with components.tansu() as broker:
        instances = []
        try:
            for number in (1, 2):
                port = free_port()
                env = service_env(
                    database_url=components.as_service_role(dsn),
                    kafka_bootstrap=broker.bootstrap,
                    smtp_port=smtp_server[0],
                    VIGIL_RULES_PORT=str(port),
                    VIGIL_RULES_BATCH_MAX_RECORDS="25",
                    VIGIL_AUDIT_ANCHOR_FILE=str(tmp_path / "anchors.jsonl"),
                )
                folder = tmp_path / f"rules-{number}"
                instances.append(start_service("safety_rules", "rules", port, env, folder))
            subjects = [f"SO-{n:02d}" for n in range(24)]
            for subject in subjects:
                # 6 results per subject, two of them low, each followed by a normal one: two
                # episodes, each raised and resolved, and the unknown subject flagged once
                values = [
                    lab_event(subject, v, day)
                    for day, v in enumerate(("12.1", "8.0", "12.3", "12.4", "7.5", "13"))
                ]
                await publish_direct(
                    broker.bootstrap, LAB_RESULTS, values, f"NCT05262686/{subject}".encode()
                )
            pool = await create_pool(dsn)
            try:
                await eventually(
                    lambda: pool.fetchval(
                        "SELECT count(*) = 144 FROM events WHERE type LIKE '%lab_result%'"
                    ),
                    timeout=60,
                    what="all 144 results stored",
                )
                await eventually(
                    lambda: pool.fetchval(
                        "SELECT count(*) = 120 FROM outbox WHERE published_at IS NOT NULL"
                    ),
                    timeout=30,
                    what="all 120 signal and data-quality events published",
                )
                assert await pool.fetchval("SELECT count(*) FROM events") == 144 + 120
                assert (
                    await pool.fetchval(
                        "SELECT count(*) FROM events WHERE type LIKE '%safety_signal.raised%'"
                    )
                    == 48
                )
                report = await verify_chain(pool, range_size=50)
                assert report.ok, report.problem
                assert report.checked == 264
                # both instances took part
                logs = [(tmp_path / f"rules-{n}" / "safety_rules.log").read_text() for n in (1, 2)]
                assert all("rules.batch_done" in log for log in logs)
            finally:
                await pool.close()
        finally:
            for instance in instances:
                instance.stop()
