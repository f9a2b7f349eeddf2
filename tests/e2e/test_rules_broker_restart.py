"""The development broker forgets its logs on a restart, and answers a fetch beyond a log's
end with no records and no error (Kafka answers OffsetOutOfRange, and the consumer resets):
the rules service must not wait there, stepping over what is published after the restart
until ingest's re-drive sends it again."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from services.settings import VigilSettings
from shared.events.topics import LAB_RESULTS
from shared.kafka import ensure_topics
from tests.e2e.test_faults import lab_event, publish_direct
from tests.support import components
from tests.support.services import service_env, start_service
from tests.support.waiting import eventually
from vigil.devstack.ports import free_port

pytestmark = pytest.mark.integration


async def test_results_published_after_a_broker_restart_are_consumed_without_a_redrive(
    tmp_path: Path, fresh_dsn: str, smtp_server: tuple[int, object]
) -> None:
    """No ingest runs here, so nothing is sent again: each result published after the
    restart reaches the audit log only if the consumer reads the new, shorter logs from
    their start."""
    with components.tansu() as broker:
        port = free_port()
        env = service_env(
            database_url=components.as_service_role(fresh_dsn),
            kafka_bootstrap=broker.bootstrap,
            smtp_port=smtp_server[0],
            VIGIL_RULES_PORT=str(port),
            VIGIL_RULES_BATCH_MAX_RECORDS="20",
        )
        rules = start_service("safety_rules", "rules", port, env, tmp_path)
        connection = await asyncpg.connect(fresh_dsn)
        try:
            # each partition's log grows well past what is published after the restart
            for n in range(12):
                subject = f"BR-{n:02d}"
                values = [lab_event(subject, "13.0", day) for day in range(10)]
                await publish_direct(
                    broker.bootstrap, LAB_RESULTS, values, f"NCT05262686/{subject}".encode()
                )
            await eventually(
                lambda: connection.fetchval(
                    "SELECT count(*) = 120 FROM events WHERE type LIKE '%lab_result%'"
                ),
                timeout=60,
                what="the 120 results before the restart stored",
            )

            broker.stop()  # the development broker forgets every topic and offset
            broker.start()
            settings = VigilSettings(kafka_bootstrap=broker.bootstrap, kafka_partitions=3)
            await ensure_topics(settings)
            # as much as before, in one burst: the new logs are as long as the old ones
            # by the time the consumer is assigned its partitions again
            after = [f"AR-{n:02d}" for n in range(12)]
            for subject in after:
                values = [lab_event(subject, "13.0", day) for day in range(9)]
                values.append(lab_event(subject, "8.0", 9))
                await publish_direct(
                    broker.bootstrap, LAB_RESULTS, values, f"NCT05262686/{subject}".encode()
                )

            await eventually(
                lambda: connection.fetchval(
                    "SELECT count(*) = 120 FROM events "
                    "WHERE type LIKE '%lab_result%' AND subject_id LIKE 'AR-%'"
                ),
                timeout=45,
                what="the 120 results published after the restart stored",
            )
            raised = await eventually(
                lambda: connection.fetchval(
                    "SELECT count(*) FROM events WHERE type LIKE '%safety_signal.raised%' "
                    "AND subject_id LIKE 'AR-%'"
                ),
                timeout=15,
                what="their signals raised",
            )
            assert raised == len(after)
        finally:
            await connection.close()
            rules.stop()
