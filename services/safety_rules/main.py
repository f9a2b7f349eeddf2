"""Composition root of the rules service: consumer, outbox relay, health endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import structlog
from aiokafka.errors import KafkaError
from fastapi import FastAPI
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from services.safety_rules.adapters.outbox_relay import OutboxRelay
from services.safety_rules.adapters.postgres import PostgresRulesUnitOfWork
from services.safety_rules.domain.rule_pack import RulePack, load_rule_packs
from services.safety_rules.handlers import Record, Rejected, handle_batch, parse_records
from shared.consumer_runtime import ConsumerRuntime, consumer_runtime, database_readiness
from shared.events.topics import DEAD_LETTERS, LAB_RESULTS, SUBJECTS
from shared.http_service import serve_app, service_app
from shared.settings import VigilSettings
from shared.structured_logging import configure_logging

log = structlog.get_logger(__name__)
GROUP_ID = "vigil-safety-rules"


async def publish_dead_letters(broker: KafkaBroker, rejected: list[Rejected]) -> None:
    """Put records that are not valid events on the dead-letter topic, with the reason."""
    await asyncio.gather(
        *(
            broker.publish(
                item.record.value,
                topic=DEAD_LETTERS,
                headers={
                    "vigil-reason": item.reason[:1000],
                    "vigil-origin": f"{item.record.topic}/{item.record.partition}"
                    f"@{item.record.offset}",
                    "vigil-rejected-by": GROUP_ID,
                },
            )
            for item in rejected
        )
    )
    for item in rejected:
        log.warning("rules.dead_lettered", reason=item.reason[:300], topic=item.record.topic)


class BatchConsumer:
    """Per batch: dead-letter bad records, then one transaction for everything else.

    Kafka offsets are committed by FastStream after this returns, i.e. after the database
    commit; on an error the batch is rewound and consumed again.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        broker: KafkaBroker,
        packs: dict[str, RulePack],
        relay: OutboxRelay,
    ) -> None:
        self._pool = pool
        self._broker = broker
        self._packs = packs
        self._relay = relay
        self._failures = 0

    async def __call__(self, message: KafkaMessage) -> None:
        raw = message.raw_message
        consumed = raw if isinstance(raw, tuple) else (raw,)
        records = [Record(r.topic, r.partition, r.offset, r.value or b"") for r in consumed]
        envelopes, rejected = parse_records(records)
        try:
            if rejected:
                await publish_dead_letters(self._broker, rejected)
            async with self._pool.acquire() as connection, connection.transaction():
                outcome = await handle_batch(
                    envelopes, PostgresRulesUnitOfWork(connection), self._packs
                )
        except (asyncpg.PostgresError, OSError, KafkaError, TimeoutError) as error:
            # back off before the batch is rewound and retried, instead of spinning
            self._failures += 1
            delay = min(0.2 * 2**self._failures, 10.0)
            log.error("rules.batch_failed", error=repr(error), retry_in_seconds=delay)
            await asyncio.sleep(delay)
            raise
        self._failures = 0
        if outcome.signals:
            self._relay.wake()
        log.info(
            "rules.batch_done",
            records=len(records),
            stored=outcome.stored,
            duplicates=outcome.duplicates,
            signals=len(outcome.signals),
            rejected=len(outcome.rejected) + len(rejected),
        )


def build_app(settings: VigilSettings) -> FastAPI:
    """The rules service as an ASGI app whose lifespan runs the consumer and relay."""
    packs = load_rule_packs(settings.study_dir)  # an invalid pack stops the start here
    holder: dict[str, ConsumerRuntime] = {}

    @asynccontextmanager
    async def workers() -> AsyncIterator[None]:
        async with consumer_runtime(settings, client_id=GROUP_ID) as runtime:
            relay = OutboxRelay(runtime.pool, runtime.broker)
            consumer = BatchConsumer(runtime.pool, runtime.broker, packs, relay)
            runtime.broker.subscriber(
                SUBJECTS,
                LAB_RESULTS,
                group_id=GROUP_ID,
                batch=True,
                max_records=settings.rules_batch_max_records,
                auto_offset_reset="earliest",
                ack_policy=AckPolicy.NACK_ON_ERROR,
            )(consumer.__call__)
            await runtime.broker.start()
            relay_task = asyncio.create_task(relay.run(), name="outbox-relay")
            holder["runtime"] = runtime
            log.info("rules.started", studies=sorted(packs))
            try:
                yield
            finally:
                relay_task.cancel()

    return service_app("Vigil safety_rules", workers, database_readiness(holder))


async def serve(settings: VigilSettings) -> None:
    """Run the rules service until stopped."""
    configure_logging(settings.log_level, service="safety_rules")
    app = build_app(settings)
    await serve_app(app, host=settings.bind_host, port=settings.rules_port)
