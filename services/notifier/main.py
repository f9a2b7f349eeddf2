"""Composition root of the notifier: signal consumer, catch-up from the audit log, delivery
worker, timers, HTTP API."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta

import structlog
from fastapi import FastAPI
from faststream import AckPolicy

from services.notifier import handlers
from services.notifier import metrics as notifier_metrics
from services.notifier.adapters import deliveries as outbox
from services.notifier.adapters.link_keys import link_key_ring
from services.notifier.adapters.postgres import PostgresNotifierUnitOfWork
from services.notifier.adapters.roster_files import load_rosters
from services.notifier.adapters.signal_inbox import SignalInboxProjection
from services.notifier.adapters.smtp import SmtpSender
from services.notifier.adapters.webhook import WebhookSender
from services.notifier.domain.links import LinkIssuer
from services.notifier.domain.planning import AckDeadlines
from services.notifier.domain.roster import Roster, WebhookChannel
from services.notifier.entrypoints.acknowledgement_api import acknowledgement_router
from services.notifier.entrypoints.acknowledgement_page import acknowledgement_page_router
from services.notifier.entrypoints.catch_up import SignalCatchUp, sample_behind
from services.notifier.entrypoints.delivery_worker import DeliveryWorker, Sender
from services.notifier.entrypoints.http_policy import AcknowledgementHttpPolicy
from services.notifier.entrypoints.signal_consumer import SignalConsumer
from services.notifier.entrypoints.workspace import account as workspace_account
from services.notifier.entrypoints.workspace import install_workspace
from services.notifier.entrypoints.workspace.common import WorkspaceDeps
from services.notifier.handlers.digests import send_due_digests
from services.settings import VigilSettings
from shared import metrics
from shared.background import DrainLoop
from shared.clock import Clock, SystemClock
from shared.consumer_runtime import ConsumerRuntime, consumer_runtime, runtime_problem
from shared.events.topics import DATA_QUALITY, SAFETY_SIGNALS
from shared.failures import BROKER_OUTAGES, OUTAGES
from shared.http_service import metrics_credential, serve_app, service_app
from shared.kafka import lag_sampler
from shared.kafka_commits import acknowledging
from shared.kafka_security import check_kafka_transport
from shared.projections import ProjectionRunner
from shared.service_state import Started
from shared.structured_logging import configure_logging
from shared.supervision import Progress, Supervisor

log = structlog.get_logger(__name__)
GROUP_ID = "vigil-notifier"


def notifier_context(
    settings: VigilSettings, rosters: Mapping[str, Roster], clock: Clock
) -> handlers.NotifierContext:
    """What the handlers are given; refuses (LinkKeysRefused) link keys it cannot use."""
    return handlers.NotifierContext(
        rosters=rosters,
        deadlines=AckDeadlines(
            serious_hours=settings.notifier_ack_hours_serious,
            grade3_hours=settings.notifier_ack_hours_grade3,
            other_hours=settings.notifier_ack_hours_other,
        ),
        links=LinkIssuer(
            link_key_ring(settings),
            settings.notifier_public_url,
            timedelta(hours=settings.notifier_link_valid_hours),
        ),
        clock=clock,
        give_up_after_seconds=settings.notifier_give_up_after_seconds,
    )


def senders(settings: VigilSettings, rosters: Mapping[str, Roster]) -> dict[str, Sender]:
    """One sender per channel kind; a roster with webhooks needs the webhook secret."""
    timeout = settings.notifier_send_timeout_seconds
    chosen: dict[str, Sender] = {
        "email": SmtpSender(
            settings.smtp_url, settings.smtp_from, timeout=timeout, starttls=settings.smtp_starttls
        )
    }
    uses_webhooks = any(
        isinstance(channel, WebhookChannel)
        for roster in rosters.values()
        for person in roster.everyone()
        for channel in person.channels
    )
    if uses_webhooks:
        if settings.notifier_webhook_secret is None:
            raise RuntimeError(
                "a roster lists webhook channels: set VIGIL_NOTIFIER_WEBHOOK_SECRET, the key "
                "receivers use to verify the X-Vigil-Signature header"
            )
        secret = settings.notifier_webhook_secret.get_secret_value().encode()
        chosen["webhook"] = WebhookSender(secret, timeout=timeout)
    return chosen


def build_app(settings: VigilSettings, *, clock: Clock | None = None) -> FastAPI:
    """The notifier as an ASGI app whose lifespan runs the consumer, worker and timers."""
    metrics_token = metrics_credential(settings)  # production refuses to start without
    check_kafka_transport(settings)
    for warning in settings.deprecated_settings():
        log.warning("notifier.deprecated_setting", problem=warning)
    rosters = load_rosters(settings.study_dir)  # an invalid roster stops the start here
    for study_id, roster in sorted(rosters.items()):
        for warning in roster.warnings():
            log.warning("notifier.roster_incomplete", study_id=study_id, problem=warning)
    context = notifier_context(settings, rosters, clock or SystemClock())
    channel_senders = senders(settings, rosters)
    notifier_metrics.initialise_delivery_channels(channel_senders)
    state: Started[ConsumerRuntime] = Started("notifier")
    supervisor = Supervisor.for_service("notifier", settings)

    @asynccontextmanager
    async def workers() -> AsyncIterator[None]:
        async with consumer_runtime(settings, client_id=GROUP_ID, supervisor=supervisor) as runtime:
            pool = runtime.pool
            worker = DeliveryWorker(
                pool,
                channel_senders,
                rosters=rosters,
                links=context.links,
                retry_max_seconds=settings.notifier_retry_max_seconds,
                give_up_after_seconds=settings.notifier_give_up_after_seconds,
                send_timeout_seconds=settings.notifier_send_timeout_seconds,
                clock=context.clock,
            )

            async def timers(progress: Progress) -> int:
                uow = PostgresNotifierUnitOfWork(pool)
                done = await handlers.escalate_due(uow, context, progress)
                done += await send_due_digests(uow, context, progress)
                if done:
                    worker.wake()
                return done

            timer_loop = DrainLoop(
                "notifier.timers",
                timers,
                retryable=OUTAGES,
                poll_seconds=settings.notifier_timer_poll_seconds,
            )
            # Kafka is the fast path; the audit log is the record: what the broker never
            # brought (it forgot, or the notifier was away) is read from there
            catch_up = SignalCatchUp(
                pool,
                context,
                grace_seconds=settings.notifier_catch_up_grace_seconds,
                poll_seconds=settings.notifier_catch_up_poll_seconds,
                on_planned=worker.wake,
            )
            consumer = SignalConsumer(
                pool, runtime.broker, context, group_id=GROUP_ID, on_planned=worker.wake
            )
            subscriber = runtime.broker.subscriber(
                SAFETY_SIGNALS,
                DATA_QUALITY,
                group_id=GROUP_ID,
                batch=True,
                auto_offset_reset="earliest",
                # committed by the handler, bounded: see shared/kafka_commits.py
                ack_policy=AckPolicy.MANUAL,
                heartbeat_interval_ms=1000,
                # a signal should not wait for an idle poll: FastStream sleeps a whole batch
                # timeout after an empty one, and a broker may hold a fetch up to its max
                # wait (Tansu answered a waiting fetch after ~116 ms at the default 500,
                # ~10 ms at 50); idle, this costs 20 fetches a second (the default setting)
                fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
                batch_timeout_ms=20,
            )
            consumer_progress = supervisor.watch("signal-consumer")
            subscriber(acknowledging(consumer, consumer_progress))
            await runtime.broker.start()
            sampled: list[metrics.Sampler] = [
                lag_sampler(subscriber, group=GROUP_ID, progress=consumer_progress),
                functools.partial(outbox.sample_deliveries, pool),
                functools.partial(
                    handlers.sample_overdue, PostgresNotifierUnitOfWork(pool), context
                ),
                functools.partial(sample_behind, pool),
            ]
            # -- the workspace inbox: a projection of the audit log, rebuildable from 0 ----
            inbox = ProjectionRunner(pool, SignalInboxProjection(), clock=context.clock)
            inbox_loop = DrainLoop("projection.signal_inbox", inbox.step, retryable=OUTAGES)
            sampled.append(inbox.sample_skipped)
            supervisor.start("projection.signal_inbox", inbox_loop.run)
            # -- end of the workspace inbox ------------------------------------------------
            supervisor.start("delivery-worker", worker.run)
            supervisor.start("timers", timer_loop.run)
            supervisor.start("catch-up", catch_up.run)
            supervisor.start("metrics", metrics.sampling(sampled, retryable=BROKER_OUTAGES))
            state.fill(runtime)
            log.info("notifier.started", studies=sorted(rosters))
            yield

    app = service_app(
        "Vigil notifier",
        workers,
        supervisor.readiness(state.readiness(runtime_problem)),
        metrics_token=metrics_token,
        supervisor=supervisor,
    )
    app.add_middleware(AcknowledgementHttpPolicy)
    app.include_router(acknowledgement_router(lambda: state.get().pool, context))
    app.include_router(acknowledgement_page_router(context))
    pool = lambda: state.get().pool  # noqa: E731 - the pool exists once the app started
    install_workspace(
        app,
        WorkspaceDeps(
            pool=pool,
            context=context,
            settings=settings,
            authenticator=workspace_account.authenticator(pool, context, settings),
        ),
    )
    return app


async def serve(settings: VigilSettings) -> None:
    """Run the notifier until stopped."""
    configure_logging(settings.log_level, service="notifier")
    await serve_app(build_app(settings), settings, port=settings.notifier_port)
