"""The notifier's Kafka consumer: per batch of signals, record and plan what they call for.

A batch is handled in one transaction. When that fails for anything but an outage, its
signals are handled one by one, each in its own transaction, and a signal that fails by
itself goes to the dead-letter topic with the reason (the rules service records it in
the audit log; the watchdog reports a protocol signal nobody was told about): one bad
signal never stops the notifier's partition. An outage rewinds the batch, retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
import structlog
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import ValidationError

from services.notifier import handlers
from services.notifier.adapters.unit_of_work import PostgresNotifierUnitOfWork
from shared.events import Envelope
from shared.failures import failure_summary, failure_traceback, is_outage
from shared.field_problems import explain
from shared.rejections import keep_and_dead_letter, kept_record

log = structlog.get_logger(__name__)


def _origin(record: Any) -> str:
    return f"{record.topic}/{record.partition}@{record.offset}"


class SignalConsumer:
    """Per batch of signals: record and plan what they call for in one transaction."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        broker: KafkaBroker,
        context: handlers.NotifierContext,
        *,
        group_id: str,
        on_planned: Callable[[], None],
    ) -> None:
        self._pool = pool
        self._broker = broker
        self._context = context
        self._group_id = group_id
        self._on_planned = on_planned

    async def __call__(self, message: KafkaMessage) -> None:
        raw = message.raw_message
        consumed = raw if isinstance(raw, tuple) else (raw,)
        parsed: list[tuple[Any, Envelope]] = []
        rejected: list[tuple[Any, str]] = []
        for record in consumed:
            try:
                parsed.append((record, Envelope.from_json(record.value or b"")))
            except (ValidationError, ValueError) as error:
                problem = explain(error, otherwise="its type names no known Vigil event type")
                log.error("notifier.invalid_signal", offset=record.offset, error=problem)
                rejected.append((record, f"not a valid Vigil event: {problem}"))
        for _, envelope in parsed:
            log.info(
                "notifier.signal_received",
                type=envelope.type,
                event_id=str(envelope.id),
                correlation_id=str(envelope.correlation_id),
            )
        try:
            added = await self._handle([envelope for _, envelope in parsed])
        except Exception as error:
            if is_outage(error):
                log.warning("notifier.batch_failed", signals=len(parsed), error=repr(error))
                await asyncio.sleep(1.0)  # rewound and retried: do not spin
                raise
            log.error("notifier.batch_crashed", signals=len(parsed), error=failure_summary(error))
            added, failed = await self._one_by_one(parsed)
            rejected += failed
        await self._dead_letter(rejected)
        if added:
            self._on_planned()
        log.info("notifier.batch_done", signals=len(parsed), deliveries_added=added)

    async def _handle(self, envelopes: Sequence[Envelope]) -> int:
        uow = PostgresNotifierUnitOfWork(self._pool)
        return await handlers.handle_signals(uow, envelopes, self._context)

    async def _one_by_one(
        self, parsed: Sequence[tuple[Any, Envelope]]
    ) -> tuple[int, list[tuple[Any, str]]]:
        """Handle each signal in its own transaction; returns deliveries added and the
        records that failed alone, with their reasons."""
        added, failed = 0, []
        for record, envelope in parsed:
            try:
                added += await self._handle([envelope])
            except Exception as error:
                if is_outage(error):
                    raise
                log.error(
                    "notifier.signal_failed",
                    event_id=str(envelope.id),
                    traceback=failure_traceback(error),
                )
                failed.append(
                    (record, f"the notifier could not handle it: {failure_summary(error)}")
                )
        return added, failed

    async def _dead_letter(self, rejected: Sequence[tuple[Any, str]]) -> None:
        """Keep each rejected record in the receipt store and publish a dead letter that
        refers to it, with its reason; the batch is committed only once the broker took
        them."""
        kept = [
            kept_record(
                record.value or b"",
                reason=reason,
                origin=_origin(record),
                rejected_by=self._group_id,
                content_type=None,
            )
            for record, reason in rejected
        ]
        await keep_and_dead_letter(self._broker, self._pool, kept)
        for record, reason in rejected:
            log.warning("notifier.dead_lettered", origin=_origin(record), reason=reason)
