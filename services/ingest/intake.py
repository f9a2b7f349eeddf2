"""What happens to every message ingest receives: kept verbatim, then published, then
answered. The order is the point: nothing is answered that was not stored first."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import timedelta

import asyncpg
import structlog

from services.ingest.adapters.publisher import BrokerUnavailable, EventPublisher
from services.ingest.adapters.receipts import (
    Outgoing,
    Receipt,
    claim_overdue,
    mark_published,
    record_receipt,
    settle,
    unrecorded,
)
from shared import metrics
from shared.analytes import analyte_for
from shared.events import CONTENT_TYPE, Envelope, LabResultReported, payload_class
from shared.events.dead_letters import dead_letter_headers, input_rejected
from shared.events.topics import DEAD_LETTERS, topic_for
from shared.failures import failure_summary, is_outage
from shared.supervision import Progress

log = structlog.get_logger(__name__)
REJECTED_BY = "vigil-ingest"


class StorageUnavailable(RuntimeError):
    """The message could not be recorded durably, so it must not be acknowledged."""


def outgoing_event(envelope: Envelope) -> Outgoing:
    return Outgoing(
        envelope.id,
        topic_for(payload_class(envelope.type)),
        envelope.key,
        envelope.to_json(),
        {"content-type": CONTENT_TYPE},
    )


def analyte_of(envelope: Envelope) -> str | None:
    """The catalogue name of a lab result's analyte (``unmapped`` if unknown); None for
    any other event."""
    if envelope.type != LabResultReported.event_type:
        return None
    payload = envelope.payload()
    assert isinstance(payload, LabResultReported)
    analyte = analyte_for(payload.loinc_code) if payload.loinc_code else None
    return analyte.name if analyte is not None else "unmapped"


class Intake:
    """Durable receipt, publication and re-drive for every channel (HTTP, MLLP, FHIR)."""

    def __init__(
        self, pool: asyncpg.Pool, publisher: EventPublisher, *, redrive_after: timedelta
    ) -> None:
        self._pool = pool
        self._publisher = publisher
        self._deadline = redrive_after

    async def _record(self, receipt: Receipt, outgoing: Sequence[Outgoing]) -> None:
        try:
            async with self._pool.acquire() as connection:
                await record_receipt(connection, receipt, outgoing, deadline=self._deadline)
        except (asyncpg.PostgresError, OSError) as error:
            raise StorageUnavailable(f"cannot record the message durably: {error}") from error

    async def _publish(self, outgoing: Sequence[Outgoing]) -> None:
        await self._publisher.publish(outgoing)
        try:
            async with self._pool.acquire() as connection:
                await mark_published(connection, [item.event_id for item in outgoing])
        except (asyncpg.PostgresError, OSError) as error:
            # published and acknowledged; the re-drive will only check it arrived
            log.warning("ingest.mark_published_failed", error=repr(error))

    async def accept(self, receipt: Receipt, envelopes: Sequence[Envelope]) -> None:
        """Record, then publish; raises StorageUnavailable or BrokerUnavailable (answer 503:
        the sender sends again, and the same events are recognised by their ids)."""
        outgoing = [outgoing_event(envelope) for envelope in envelopes]
        try:
            await self._record(receipt, outgoing)
            await self._publish(outgoing)
        except (StorageUnavailable, BrokerUnavailable):
            metrics.record_ingest_rejected(receipt.channel, "unavailable")
            raise
        analytes = [analyte for e in envelopes if (analyte := analyte_of(e)) is not None]
        metrics.record_ingest_accepted(receipt.channel, analytes)

    async def reject(self, receipt: Receipt, origin: str, *, reason_code: str) -> None:
        """Record a rejected message and send it to the dead letters, whose InputRejected
        event is owed to the audit log like any other. ``reason_code`` is a short code for
        metrics (the full reason is in the receipt)."""
        metrics.record_ingest_rejected(receipt.channel, reason_code)
        headers = dead_letter_headers(
            reason=receipt.reason or "rejected", origin=origin, rejected_by=REJECTED_BY
        )
        event_id = input_rejected(receipt.raw, headers, fallback_origin=origin).content_id()
        outgoing = [Outgoing(event_id, DEAD_LETTERS, None, receipt.raw, headers)]
        await self._record(receipt, outgoing)
        # recorded: if the broker is away, the re-drive publishes it when it is back
        with contextlib.suppress(BrokerUnavailable):
            await self._publish(outgoing)

    async def sample_metrics(self) -> None:
        """Update the gauges of what is owed to the audit log (a stall shows as age)."""
        async with self._pool.acquire() as connection:
            count, oldest_age = await unrecorded(connection)
        metrics.set_queue(
            metrics.INGEST_UNRECORDED_EVENTS,
            metrics.INGEST_OLDEST_UNRECORDED_AGE,
            count,
            oldest_age,
        )

    async def redrive(self, progress: Progress | None = None) -> int:
        """Republish what is overdue and not in the audit log yet; returns how many.

        Each record is published on its own: one the broker refuses is reported and
        waits its next (exponentially later) check, the others go; only when the broker
        took none of them because it is away is the claim undone for the next round."""
        async with self._pool.acquire() as connection:
            settled = await settle(connection)
            async with connection.transaction():
                overdue = await claim_overdue(connection, 500, deadline=self._deadline)
                results = await self._publisher.publish_each(overdue) if overdue else []
                failed = [(r, e) for r, e in zip(overdue, results, strict=True) if e is not None]
                if failed and len(failed) == len(overdue) and all(is_outage(e) for _, e in failed):
                    raise BrokerUnavailable(
                        f"Kafka took none of {len(overdue)} re-driven record(s)"
                    )
        for record, error in failed:
            log.error(
                "ingest.redrive_failed", event_id=str(record.event_id), error=failure_summary(error)
            )
            if progress is not None and not is_outage(error):
                progress.item_failed(f"event {record.event_id}", error)
        if overdue:
            log.warning("ingest.redriven", records=len(overdue) - len(failed), settled=settled)
        return len(overdue) - len(failed)
