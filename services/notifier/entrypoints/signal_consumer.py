"""The notifier's Kafka consumer: per batch of signals, record and plan what they call for.

The records are decoded by the shared batch consumer: one that is not a valid Vigil event
goes to the dead-letter topic with the field and problem that make it so, and so does a
valid event the notifier cannot act on (a type it does not answer, a study with no
roster). A batch is
handled in one transaction. When that fails for anything but an outage, its
signals are handled one by one, each in its own transaction, and a signal that fails by
itself goes to the dead-letter topic with the reason (the rules service records it in
the audit log; the watchdog reports a protocol signal nobody was told about): one bad
signal never stops the notifier's partition. An outage rewinds the batch, retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import asyncpg
import structlog
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from services.notifier import handlers
from services.notifier.adapters.postgres import PostgresNotifierUnitOfWork
from shared.batch_consumer import Decoded, DecodingConsumer, Refused
from shared.events import Envelope
from shared.failures import failure_summary, failure_traceback, is_outage

log = structlog.get_logger(__name__)


class SignalConsumer:
    """Per batch of signals: record and plan what they call for in one transaction; a
    record that is no valid event, an event the notifier cannot act on, or a signal that
    fails alone, is dead-lettered by the shared :class:`shared.batch_consumer.DecodingConsumer`."""

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
        self._context = context
        self._on_planned = on_planned
        self._consumer = DecodingConsumer(
            self._handle_batch,
            broker=broker,
            pool=pool,
            rejected_by=group_id,
            service="notifier",
            reader="notifier",
            invalid_record_event="notifier.invalid_signal",  # its name before the shared consumer
        )

    async def __call__(self, message: KafkaMessage) -> None:
        await self._consumer(message)

    async def _handle_batch(self, parsed: list[Decoded]) -> list[Refused]:
        """Record and plan the batch's signals; returns the events the notifier cannot
        act on (see :func:`handlers.why_not_acted_on`) and the signals that failed alone."""
        actionable: list[Decoded] = []
        refused: list[Refused] = []
        for item in parsed:
            envelope = item.envelope
            log.info(
                "notifier.signal_received",
                type=envelope.type,
                event_id=str(envelope.id),
                correlation_id=str(envelope.correlation_id),
            )
            reason = handlers.why_not_acted_on(envelope, self._context)
            if reason is None:
                actionable.append(item)
            else:
                refused.append(Refused(item.record, reason))
        try:
            added = await self._handle([item.envelope for item in actionable])
        except Exception as error:
            if is_outage(error):
                log.warning("notifier.batch_failed", signals=len(parsed), error=repr(error))
                await asyncio.sleep(1.0)  # rewound and retried: do not spin
                raise
            log.error("notifier.batch_crashed", signals=len(parsed), error=failure_summary(error))
            added, failed = await self._one_by_one(actionable)
            refused += failed
        if added:
            self._on_planned()
        log.info("notifier.batch_done", signals=len(parsed), deliveries_added=added)
        return refused

    async def _handle(self, envelopes: Sequence[Envelope]) -> int:
        uow = PostgresNotifierUnitOfWork(self._pool)
        return await handlers.handle_signals(uow, envelopes, self._context)

    async def _one_by_one(self, parsed: Sequence[Decoded]) -> tuple[int, list[Refused]]:
        """Handle each signal in its own transaction; returns deliveries added and the
        records that failed alone, with their reasons."""
        added, failed = 0, []
        for item in parsed:
            try:
                added += await self._handle([item.envelope])
            except Exception as error:
                if is_outage(error):
                    raise
                log.error(
                    "notifier.signal_failed",
                    event_id=str(item.envelope.id),
                    traceback=failure_traceback(error),
                )
                reason = f"the notifier could not handle it: {failure_summary(error)}"
                failed.append(Refused(item.record, reason))
        return added, failed
