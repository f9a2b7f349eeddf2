"""What happens to every message ingest receives: kept verbatim, then published, then
answered. The order is the point: nothing is answered that was not stored first."""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import Sequence
from dataclasses import replace

import structlog

from services.ingest import metrics
from services.ingest.domain.authorization import Refusal, claims, decide, precheck, without
from services.ingest.domain.principals import Principal
from services.ingest.handlers.ports import (
    BrokerUnavailable,
    Claims,
    EventPublisher,
    Outgoing,
    Receipt,
    ReceiptStore,
    StorageUnavailable,
)
from shared.analytes import analyte_for
from shared.events import CONTENT_TYPE, Envelope, LabResultReported, payload_class
from shared.events.dead_letters import ReceiptReference, dead_letter, study_named_in
from shared.events.topics import DEAD_LETTERS, topic_for
from shared.failures import failure_summary, is_outage
from shared.metrics import set_queue
from shared.supervision import Progress

log = structlog.get_logger(__name__)
REJECTED_BY = "vigil-ingest"


class Forbidden(Exception):
    """The principal may not write some of what the message carries (HTTP 403, HL7 AR).

    The message is refused whole and kept as a rejected receipt; ``refusals`` name each
    event refused, the field and why."""

    def __init__(self, refusals: Sequence[Refusal]) -> None:
        self.refusals = list(refusals)
        super().__init__(describe(self.refusals))


def describe(refusals: Sequence[Refusal]) -> str:
    """The refusals in words, for a receipt's reason (fields and rules, never values)."""
    kinds = sorted({f"{r.code} ({r.field}): {r.problem}" for r in refusals})
    return f"403 {len(refusals)} event(s) refused: " + "; ".join(kinds)


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

    def __init__(self, store: ReceiptStore, publisher: EventPublisher) -> None:
        self._store = store
        self._publisher = publisher

    async def _record(
        self, receipt: Receipt, outgoing: Sequence[Outgoing], receipt_id: uuid.UUID | None = None
    ) -> None:
        await self._store.record(receipt, outgoing, receipt_id)

    async def _publish(self, outgoing: Sequence[Outgoing]) -> None:
        await self._publisher.publish(outgoing)
        try:
            await self._store.mark_published([item.event_id for item in outgoing])
        except StorageUnavailable as error:
            # published and acknowledged; the re-drive will only check it arrived
            log.warning("ingest.mark_published_failed", error=repr(error.__cause__ or error))

    async def _record_authorized(
        self,
        receipt: Receipt,
        envelopes: Sequence[Envelope],
        principal: Principal,
        owed: Sequence[Outgoing],
    ) -> list[Refusal]:
        """In one transaction: claim what nobody owns, judge the request against the
        owners, and record the receipt with its owed events (``owed``: the envelopes'
        records); or, when something is refused, roll all of it back and return the
        refusals."""
        enrolled, records, touched = claims(envelopes)
        return await self._store.record_owned(
            receipt,
            owed,
            claims=Claims(principal.source, enrolled, records, touched),
            judge=functools.partial(decide, envelopes, principal),
        )

    async def _refuse(
        self, receipt: Receipt, refusals: Sequence[Refusal], principal: Principal, origin: str
    ) -> None:
        """Keep the refused message with why, count it, and raise Forbidden; raises
        StorageUnavailable when it cannot be kept (the sender is then told to send again,
        so that a refusal is never the only trace of a message)."""
        rejected = replace(receipt, outcome="rejected", reason=describe(refusals))
        await self.reject(
            rejected, origin=origin, reason_code=refusals[0].code, principal=principal
        )
        log.warning(
            "ingest.forbidden",
            channel=receipt.channel,
            source=principal.source,
            codes=sorted({r.code for r in refusals}),
        )
        raise Forbidden(refusals)

    async def accept(
        self,
        receipt: Receipt,
        envelopes: Sequence[Envelope],
        *,
        principal: Principal,
        partial: bool = False,
        origin: str | None = None,
    ) -> list[Refusal]:
        """Authorise, record, then publish what ``principal`` sent.

        Every event must be the principal's to write (its studies, its sites, subjects and
        records it owns or may amend; see ``authorization``). By default one refused
        event refuses the whole message: it is kept as a rejected receipt and Forbidden
        is raised. With ``partial`` (a FHIR batch) the allowed events are accepted and the
        refusals returned; the caller keeps each refused part. Raises StorageUnavailable
        or BrokerUnavailable (answer 503: the sender sends again, and the same events are
        recognised by their ids).
        """
        origin = origin or receipt.source
        receipt = replace(
            receipt, principal_source=principal.source, credential=principal.credential
        )
        if not envelopes:  # nothing owed to the audit log, but received: kept all the same
            await self._record(receipt, [])
            return []
        refusals = precheck(envelopes, principal)
        if refusals and not partial:
            await self._refuse(receipt, refusals, principal, origin)
        allowed = without(envelopes, {r.event_id for r in refusals})
        records = {envelope.id: outgoing_event(envelope) for envelope in allowed}  # once
        try:
            while allowed:
                owed = [records[envelope.id] for envelope in allowed]
                more = await self._record_authorized(receipt, allowed, principal, owed)
                if not more:
                    break
                if not partial:
                    await self._refuse(receipt, more, principal, origin)
                refusals += more  # a batch: accept the rest (each pass drops one or more)
                allowed = without(allowed, {r.event_id for r in more})
            if allowed:
                await self._publish([records[envelope.id] for envelope in allowed])
        except (StorageUnavailable, BrokerUnavailable):
            metrics.record_ingest_rejected(receipt.channel, "unavailable")
            raise
        if allowed:
            analytes = [analyte for e in allowed if (analyte := analyte_of(e)) is not None]
            metrics.record_ingest_accepted(receipt.channel, analytes)
        return refusals

    async def reject(
        self,
        receipt: Receipt,
        origin: str,
        *,
        reason_code: str,
        principal: Principal | None = None,
    ) -> None:
        """Record a rejected message and send a dead letter that refers to its receipt
        (never the raw message, which stays in the receipt store); its InputRejected event
        is owed to the audit log like any other. ``reason_code`` is a short code for
        metrics; the reason names fields and problems, never values; ``principal`` is who
        sent it, when known."""
        if principal is not None:
            receipt = replace(
                receipt, principal_source=principal.source, credential=principal.credential
            )
        metrics.record_ingest_rejected(receipt.channel, reason_code)
        receipt_id = uuid.uuid4()
        letter = dead_letter(
            ReceiptReference.of(receipt_id, receipt.raw, receipt.channel),
            reason=receipt.reason or "rejected",
            origin=origin,
            rejected_by=REJECTED_BY,
            study_id=study_named_in(receipt.raw),
        )
        event_id = letter.event(fallback_origin=origin).content_id()
        outgoing = [Outgoing(event_id, DEAD_LETTERS, None, letter.value, letter.headers)]
        await self._record(receipt, outgoing, receipt_id)
        # recorded: if the broker is away, the re-drive publishes it when it is back
        with contextlib.suppress(BrokerUnavailable):
            await self._publish(outgoing)

    async def sample_metrics(self) -> None:
        """Update the gauges of what is owed to the audit log (a stall shows as age)."""
        count, oldest_age = await self._store.unrecorded()
        set_queue(
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
        settled = await self._store.settle()
        async with self._store.claim_overdue(500) as overdue:
            results = await self._publisher.publish_each(overdue) if overdue else []
            failed = [(r, e) for r, e in zip(overdue, results, strict=True) if e is not None]
            if failed and len(failed) == len(overdue) and all(is_outage(e) for _, e in failed):
                raise BrokerUnavailable(f"Kafka took none of {len(overdue)} re-driven record(s)")
        for record, error in failed:
            log.error(
                "ingest.redrive_failed", event_id=str(record.event_id), error=failure_summary(error)
            )
            if progress is not None and not is_outage(error):
                progress.item_failed(f"event {record.event_id}", error)
        if overdue:
            log.warning("ingest.redriven", records=len(overdue) - len(failed), settled=settled)
        return len(overdue) - len(failed)
