"""Kafka wiring every service uses: the broker client and topic creation."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, TopicAuthorizationFailedError
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import REGISTRY

from shared import metrics
from shared.events.topics import ALL_TOPICS
from shared.kafka_security import kafka_client_options, kafka_security
from shared.settings import CommonSettings

if TYPE_CHECKING:
    from shared.supervision import Progress

log = structlog.get_logger(__name__)


def make_broker(settings: CommonSettings, *, client_id: str) -> KafkaBroker:
    """A FastStream Kafka broker that waits for every in-sync replica (acks=all).

    The idempotent producer is off: the development broker (Tansu) does not implement
    InitProducerId, and Vigil gets exactly-once effects from event ids kept in PostgreSQL.
    The client's request timeout stays at its default: consumer-group joins can take
    seconds, and how long a publisher waits is bounded by the caller instead. TLS and SASL
    come from the settings (:mod:`shared.kafka_security`), as for every other client.
    """
    return KafkaBroker(
        settings.kafka_bootstrap,
        security=kafka_security(settings),
        client_id=client_id,
        acks="all",
        enable_idempotence=False,
        linger_ms=2,
        # FastStream's own lines (handler errors, "Kafka error occurred") go to the JSON
        # logs; its per-message Received/Processed lines only at DEBUG
        logger=logging.getLogger("faststream"),
        log_level=logging.DEBUG,
        middlewares=[KafkaPrometheusMiddleware(registry=REGISTRY, app_name=client_id)],
    )


class TopicCreationRefused(RuntimeError):
    """The broker's ACLs do not let this principal create a missing topic: waiting won't help."""


async def ensure_topics(settings: CommonSettings, topics: tuple[str, ...] = ALL_TOPICS) -> None:
    """Create Vigil's topics with the configured partition count; existing topics are kept.

    With ACLs a service sees only the topics it may Describe, and may not create any: the
    topics are then created by the administrator (see docs/kafka-acls.md).
    """
    admin = AIOKafkaAdminClient(**kafka_client_options(settings), client_id="vigil-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [topic for topic in topics if topic not in existing]
        if not missing:
            return
        new_topics = [
            NewTopic(
                name=topic,
                num_partitions=settings.kafka_partitions,
                replication_factor=settings.kafka_replication_factor,
            )
            for topic in missing
        ]
        response = await admin.create_topics(new_topics)
        for topic, code, *message in response.topic_errors:
            # "already exists" means another service won the race between list and create
            if code == TopicAuthorizationFailedError.errno:
                raise TopicCreationRefused(
                    f"topic {topic} is missing and this Kafka principal "
                    f"({settings.kafka_sasl_username or 'anonymous'}) may not create it: create "
                    "Vigil's topics as the Kafka administrator (docs/kafka-acls.md), or grant "
                    "Describe on them"
                )
            if code not in (0, TopicAlreadyExistsError.errno):
                raise KafkaError(f"cannot create topic {topic}: error {code} {message}")
        log.info("kafka.topics_created", topics=missing, partitions=settings.kafka_partitions)
    finally:
        await admin.close()


async def wait_for_topics(settings: CommonSettings, *, timeout: float = 60.0) -> None:
    """Create the topics, retrying while the broker is not reachable yet."""
    deadline = asyncio.get_running_loop().time() + timeout
    delay = 0.2
    while True:
        try:
            await ensure_topics(settings)
            return
        except (KafkaError, OSError) as error:
            if asyncio.get_running_loop().time() + delay > deadline:
                raise RuntimeError(
                    f"Kafka at {settings.kafka_bootstrap} (VIGIL_KAFKA_BOOTSTRAP) not reachable "
                    f"after {timeout:.0f}s: {error}"
                ) from error
            log.warning("kafka.unreachable", bootstrap=settings.kafka_bootstrap, error=str(error))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def lag_sampler(
    subscriber: object, *, group: str, progress: Progress | None = None
) -> metrics.Sampler:
    """A sampler that sets the consumer lag gauges of a started FastStream subscriber.

    With ``progress`` (the consumer's task), records waiting behind the committed offsets
    count as work waiting: a consumer whose handler is never called again (a fetch or a
    rebalance failing for ever) then turns stuck after the supervisor's stuck time, and
    /readyz says so, instead of looking idle."""

    async def sample() -> None:
        consumer: metrics.LaggingConsumer | None = getattr(subscriber, "consumer", None)
        if await metrics.record_consumer_lag(group, consumer) and progress is not None:
            progress.waiting()

    sample.__qualname__ = f"consumer_lag[{group}]"
    return sample
