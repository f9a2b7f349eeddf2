"""Composition root of the rules service: builds the adapters and starts the facts consumer,
the outbox relay, the projection, the watchdog and the anchoring under one supervisor."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import structlog
from fastapi import FastAPI
from faststream import AckPolicy

from services.safety_rules import metrics as rules_metrics
from services.safety_rules.adapters.outbox_relay import OutboxRelay
from services.safety_rules.adapters.positions import SeekToStoredPositions
from services.safety_rules.adapters.rule_pack_files import load_rule_packs
from services.safety_rules.adapters.subject_state_projection import SubjectStateProjection
from services.safety_rules.adapters.undelivered import PostgresWatchdogLog
from services.safety_rules.adapters.watchdog_channels import report_channels
from services.safety_rules.entrypoints.anchoring import anchor_periodically
from services.safety_rules.entrypoints.consumers import (
    FactsConsumer,
    supervised,
    undecoded,
)
from services.safety_rules.entrypoints.records import event_id_of
from services.safety_rules.handlers.ports import ReportChannel
from services.safety_rules.handlers.watchdog import ReportNotSent, Watchdog
from services.settings import VigilSettings
from shared import metrics
from shared.background import DrainLoop
from shared.clock import Clock, SystemClock
from shared.consumer_runtime import ConsumerRuntime, consumer_runtime, runtime_problem
from shared.db.pool import DATABASE_ERRORS
from shared.events.topics import (
    ADVERSE_EVENTS,
    DATA_QUALITY,
    DEAD_LETTERS,
    LAB_RESULTS,
    MEDICATIONS,
    SUBJECTS,
)
from shared.failures import BROKER_OUTAGES, OUTAGES, outages_and
from shared.http_service import metrics_credential, serve_app, service_app
from shared.kafka import lag_sampler
from shared.kafka_security import check_kafka_transport
from shared.projections import ProjectionRunner
from shared.service_state import Started
from shared.structured_logging import configure_logging
from shared.supervision import Supervisor

log = structlog.get_logger(__name__)
GROUP_ID = "vigil-safety-rules"


@dataclass(frozen=True)
class RulesParts:
    """What the rules service's lifespan started, for its readiness check."""

    runtime: ConsumerRuntime
    projectors: tuple[ProjectionRunner, ...]


async def rules_problem(parts: RulesParts) -> str | None:
    """Why the running rules service is not ready: its database or broker, or a projection
    that diverged from the audit log."""
    if (problem := await runtime_problem(parts.runtime)) is not None:
        return problem
    try:
        for projector in parts.projectors:
            if (diverged := await projector.divergence()) is not None:
                return diverged
    except DATABASE_ERRORS as error:
        return f"database unreachable: {error}"
    return None


def watchdog_loop(
    pool: asyncpg.Pool, settings: VigilSettings, channels: list[ReportChannel]
) -> DrainLoop:
    """The watchdog, every VIGIL_WATCHDOG_POLL_SECONDS; a report no channel took is
    tried again with back-off."""
    if not channels:
        log.warning(
            "watchdog.no_channel",
            hint="set VIGIL_WATCHDOG_SMTP_URL and VIGIL_WATCHDOG_EMAIL_TO (or "
            "VIGIL_WATCHDOG_WEBHOOK_URL): undelivered signals are then only measured "
            "(vigil_oldest_undelivered_signal_age_seconds), not reported",
        )
    watchdog = Watchdog(
        PostgresWatchdogLog(pool),
        channels,
        deadline_seconds=settings.watchdog_undelivered_after_seconds,
    )
    return DrainLoop(
        "watchdog",
        watchdog.round,
        retryable=outages_and(ReportNotSent),
        poll_seconds=settings.watchdog_poll_seconds,
    )


def build_app(settings: VigilSettings, *, clock: Clock | None = None) -> FastAPI:
    """The rules service as an ASGI app whose lifespan runs its workers; ``clock`` (the
    system's by default) dates the events its projection records and the audit anchors."""
    the_clock = clock or SystemClock()
    metrics_token = metrics_credential(settings)  # production refuses to start without
    check_kafka_transport(settings)
    packs = load_rule_packs(settings.study_dir)  # an invalid pack stops the start here
    state: Started[RulesParts] = Started("safety_rules")
    supervisor = Supervisor.for_service("safety_rules", settings)
    report_to = report_channels(settings)  # a half-configured channel stops the start here
    rules_metrics.initialise_rules(rule.id for pack in packs.values() for rule in pack.rules)

    @asynccontextmanager
    async def workers() -> AsyncIterator[None]:
        async with consumer_runtime(settings, client_id=GROUP_ID, supervisor=supervisor) as runtime:
            relay = OutboxRelay(runtime.pool, runtime.broker)
            projector = ProjectionRunner(runtime.pool, SubjectStateProjection(), clock=the_clock)
            projection_loop = DrainLoop(
                "projection.subject_state", projector.step, retryable=OUTAGES
            )

            def committed(published: bool, projection_behind: bool) -> None:
                # the batch moved the subject state itself; the loop (which also polls, for
                # events other services append) is needed only when it left some behind
                if projection_behind:
                    projection_loop.wake()
                if published:
                    relay.wake()

            facts_progress = supervisor.watch("facts-consumer")
            facts = FactsConsumer(
                runtime.pool,
                runtime.broker,
                packs,
                group_id=GROUP_ID,
                on_commit=committed,
                projection=projector,
                pipelined=settings.rules_pipeline,
                incremental=settings.rules_incremental,
                progress=facts_progress,
            )
            # one consumer group for all the input topics: one join, and a subject's facts and
            # the rejected input are recorded by the same transactions
            positions = SeekToStoredPositions(
                runtime.pool,
                GROUP_ID,
                settle=facts.drain,
                forget=facts.forget,
                probe=settings,
                event_id_of=event_id_of,
            )
            subscriber = runtime.broker.subscriber(
                SUBJECTS,
                LAB_RESULTS,
                ADVERSE_EVENTS,
                MEDICATIONS,
                DATA_QUALITY,
                DEAD_LETTERS,
                group_id=GROUP_ID,
                batch=True,
                max_records=settings.rules_batch_max_records,
                auto_offset_reset="earliest",
                # committed by the handler, bounded: see shared/kafka_commits.py
                ack_policy=AckPolicy.MANUAL,
                heartbeat_interval_ms=1000,
                # a result should not wait for a fuller batch or an idle poll: latency
                # (Tansu answers a waiting fetch after ~18 ms at 100, ~10 ms at 50; a batch
                # takes what is buffered at once, so the idle sleep only delays the first)
                fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
                batch_timeout_ms=20,
                listener=positions,
                # the handler reads the raw records itself: no JSON decoding of each body
                decoder=undecoded,
            )
            subscriber(supervised(facts, facts_progress))
            positions.subscriber = subscriber
            await runtime.broker.start()
            sampled = [
                relay.sample_backlog,
                lag_sampler(subscriber, group=GROUP_ID, progress=facts_progress),
                projector.sample_skipped,
            ]
            supervisor.start("outbox-relay", relay.run)
            supervisor.start("projection.subject_state", projection_loop.run)
            supervisor.start("watchdog", watchdog_loop(runtime.pool, settings, report_to).run)
            supervisor.start("metrics", metrics.sampling(sampled, retryable=BROKER_OUTAGES))
            if settings.audit_anchor_interval_seconds > 0:
                supervisor.start(
                    "anchor",
                    functools.partial(
                        anchor_periodically,
                        runtime.pool,
                        every_seconds=settings.audit_anchor_interval_seconds,
                        anchor_file=settings.audit_anchor_file,
                        clock=the_clock,
                    ),
                )
            state.fill(RulesParts(runtime, (projector,)))
            log.info("rules.started", studies=sorted(packs))
            try:
                yield
            finally:
                # the batch under way commits (or fails), and its offsets reach Kafka,
                # before the broker stops; no batch is begun after it
                await facts.stop()

    app = service_app(
        "Vigil safety_rules",
        workers,
        supervisor.readiness(state.readiness(rules_problem)),
        metrics_token=metrics_token,
        supervisor=supervisor,
    )
    return app


async def serve(settings: VigilSettings) -> None:
    """Run the rules service until stopped."""
    configure_logging(settings.log_level, service="safety_rules")
    await serve_app(build_app(settings), settings, port=settings.rules_port)
