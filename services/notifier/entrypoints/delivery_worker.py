"""Sends due deliveries from the outbox, recording every attempt and outcome as an event.

For each delivery: (1) claim it (with others that are due) and record
``DeliveryAttempted``, commit; (2) send it, alongside the others in flight; (3) record
its outcome as soon as it is known. A crash after a server accepted a message and before
(3) commits leaves that delivery to be tried again once its lease runs out, with the same
Message-ID / Idempotency-Key: that is the one window in which a person may get a message
twice, and the stream then shows two attempts before one success.

A stop (SIGTERM) is no crash: the worker claims nothing more and lets the sends in flight
end and their outcomes be recorded, each within its deadline, before the pool closes, so
a stop bounded by the send timeout (and 5 s to record) sends nothing twice.

One slow delivery never holds up the others: each attempt has a deadline for the whole
exchange (``send_timeout_seconds``; a server that answers slowly, byte by byte, does not
restart it), after which it is a failed attempt retried later like any other; and the
running worker claims more as soon as any send ends, never waiting for a whole batch.

The outbox holds each message's facts and the claims of its links; the message is
rendered here, just before it is sent (its links for its channel, its times in its
reader's zone), so no live token is ever stored. The same claims
and key make the same link, so the repeat after a crash is the same message.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import aiosmtplib
import asyncpg
import httpx
import structlog

from services.notifier import metrics
from services.notifier.adapters.postgres import PostgresNotifierUnitOfWork
from services.notifier.adapters.webhook import WebhookRejected
from services.notifier.domain.deliveries import (
    Claimed,
    PlannedDelivery,
    Unreadable,
    as_sent,
    compose,
)
from services.notifier.domain.links import LinkIssuer, relinked, without_tokens
from services.notifier.domain.messages import Delivery
from services.notifier.domain.roster import Roster
from services.notifier.handlers.ports import NotifierUnitOfWork
from shared.background import DrainLoop
from shared.clock import Clock, SystemClock
from shared.events import EventPayload
from shared.events.notifications import (
    DeliveryAttempted,
    DeliveryFailed,
    DeliveryFellBack,
    DeliverySucceeded,
)
from shared.failures import OUTAGES, failure_summary, failure_traceback, is_outage
from shared.supervision import Progress

log = structlog.get_logger(__name__)

# time to record an attempt's outcome once its send ended: within the lease, and waited
# for on stopping
OUTCOME_MARGIN_SECONDS = 5.0

SEND_ERRORS = (aiosmtplib.SMTPException, OSError, TimeoutError, httpx.HTTPError, WebhookRejected)


class Sender(Protocol):
    async def send(self, delivery: Delivery) -> str: ...


@dataclass
class _Outcome:
    """A send that ended, waiting for its outcome to be recorded."""

    item: Claimed
    outcome: str | BaseException
    future: asyncio.Future[None]
    progress: Progress | None


def _item_failed(
    progress: Progress | None, delivery_id: uuid.UUID, error: BaseException | str
) -> None:
    if progress is not None:
        progress.item_failed(f"delivery {delivery_id}", error)


def _reason(error: BaseException) -> str:
    """Why an attempt failed: the server's or the network's answer as it came (less any
    link token: a receiver's answer may echo the message); for anything else only the
    error's type and place (its text could quote the message)."""
    if isinstance(error, (*SEND_ERRORS, LookupError)):
        return without_tokens(repr(error))
    return f"message could not be built or sent: {failure_summary(error)}"


def retry_delay(attempt: int, *, maximum: float, rng: Callable[[], float] = random.random) -> float:
    """Exponential back-off from 2 s, capped, with full jitter over the upper half."""
    base = min(2.0 * 2 ** max(attempt - 1, 0), maximum)
    return float(base / 2 + rng() * base / 2)


def _ids(delivery: PlannedDelivery) -> dict[str, Any]:
    return {
        "study_id": delivery.study_id,
        "subject_id": delivery.subject_id,
        "signal_id": delivery.signal_id,
        "delivery_id": delivery.delivery_id,
        "person_id": delivery.person_id,
        "channel": delivery.channel,
        "purpose": delivery.purpose,
    }


class DeliveryWorker:
    """Claims due deliveries (SKIP LOCKED and a lease, so instances share the work).

    Each claim and each outcome is one transaction of a unit of work that
    ``unit_of_work`` makes (by default PostgreSQL's, on ``pool``); ``clock`` says when a
    failed attempt is tried again."""

    def __init__(
        self,
        pool: asyncpg.Pool | None,
        senders: Mapping[str, Sender],
        *,
        rosters: Mapping[str, Roster],
        links: LinkIssuer,
        retry_max_seconds: float,
        give_up_after_seconds: float,
        send_timeout_seconds: float = 30.0,
        lease_seconds: float | None = None,
        batch_size: int = 20,
        rng: Callable[[], float] = random.random,
        clock: Clock | None = None,
        unit_of_work: Callable[[], NotifierUnitOfWork] | None = None,
    ) -> None:
        if unit_of_work is None:
            if pool is None:
                raise ValueError("a delivery worker needs a pool or a unit_of_work")
            database = pool
            unit_of_work = lambda: PostgresNotifierUnitOfWork(database)  # noqa: E731
        self._unit_of_work = unit_of_work
        self._clock = clock or SystemClock()
        self._senders = senders
        self._rosters = rosters
        self._links = links
        self._retry_max = retry_max_seconds
        self._give_up_after = give_up_after_seconds
        # the lease outlives an attempt, so no other instance claims one in flight: a
        # shorter lease given shortens the attempt's deadline
        self._lease = lease_seconds or send_timeout_seconds * 2 + OUTCOME_MARGIN_SECONDS
        self._send_timeout = min(send_timeout_seconds, self._lease / 2)
        self._batch_size = batch_size
        self._rng = rng
        self._in_flight: set[asyncio.Task[None]] = set()
        self._outcomes: list[_Outcome] = []
        self._recorder: asyncio.Task[None] | None = None
        self._crashed: list[BaseException] = []
        self._loop = DrainLoop("notifier.worker", self._claim_more, retryable=OUTAGES)

    def wake(self) -> None:
        """New deliveries were committed."""
        self._loop.wake()

    async def run(self, progress: Progress) -> None:
        """Send until cancelled, reporting each claim to ``progress``: up to ``batch_size``
        sends in flight, more claimed whenever one ends. Cancelled, it claims nothing more
        and lets the sends in flight end (see :meth:`_finish_in_flight`)."""
        try:
            await self._loop.run(progress)
        finally:  # stopped: nothing new is claimed, what is in flight may end
            await self._finish_in_flight()

    @property
    def stop_within_seconds(self) -> float:
        """How long stopping waits for the sends in flight: each ends by its deadline (the
        send timeout), and its outcome is recorded within the margin the lease keeps."""
        return self._send_timeout + OUTCOME_MARGIN_SECONDS

    async def _finish_in_flight(self) -> None:
        """Let the sends in flight end and their outcomes be recorded before the worker
        stops: a server may have a message already, and a send cancelled now would be
        sent again (the same Message-ID) once its lease ran out. One that has not ended
        within :attr:`stop_within_seconds` is cancelled, tried again after its lease."""
        in_flight = set(self._in_flight)
        try:
            if in_flight:
                log.info(
                    "notifier.worker_finishing_sends",
                    in_flight=len(in_flight),
                    within_seconds=self.stop_within_seconds,
                )
                _, late = await asyncio.wait(in_flight, timeout=self.stop_within_seconds)
                if late:
                    log.warning("notifier.worker_sends_cut_off", cut_off=len(late))
        finally:  # cancelled again, or too late: cancel what is left, and await it
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
            # the outcomes of sends that ended are recorded by a task of their own: let the
            # round under way end (within the margin) before the pool closes
            if (recorder := self._recorder) is not None and not recorder.done():
                await asyncio.wait([recorder], timeout=OUTCOME_MARGIN_SECONDS)
                recorder.cancel()
                await asyncio.gather(recorder, return_exceptions=True)
            self._in_flight.clear()
            self._crashed.clear()

    async def _claim_more(self, progress: Progress) -> int:
        """One step of the running worker: claim as many as there are free places and
        start sending them without waiting. An outage met while recording an outcome
        fails the next step (the loop backs off; that delivery waits for its lease)."""
        if self._crashed:
            error, *_ = self._crashed
            self._crashed.clear()
            raise error
        free = self._batch_size - len(self._in_flight)
        if free <= 0:
            return 0  # woken again when a send ends
        claimed, tried = await self._claim(free, progress)
        for item in claimed:
            task = asyncio.create_task(self._deliver(item, progress))
            self._in_flight.add(task)
            task.add_done_callback(self._ended)
        return tried

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            self._crashed.append(error)
        self._loop.wake()  # a place is free

    async def send_due(self, progress: Progress | None = None) -> int:
        """Send one batch of due deliveries and wait for every outcome; returns how many
        were tried.

        Each delivery fails alone: one that cannot be read, built or sent, or is not sent
        within the send timeout, is a failed attempt with its reason (retried with
        back-off, so it is not first in line again, then fallen back), and the others are
        sent all the same."""
        claimed, tried = await self._claim(self._batch_size, progress)
        outcomes = await asyncio.gather(
            *(self._deliver(c, progress) for c in claimed), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome  # an outage while recording: the step is retried after the lease
        return tried

    async def _claim(self, limit: int, progress: Progress | None) -> tuple[list[Claimed], int]:
        """Up to ``limit`` due deliveries, each attempt recorded; the unreadable ones are
        recorded as failed here. Returns the sendable ones and how many were claimed."""
        async with self._unit_of_work() as uow:
            claimed, unreadable = await uow.claim_due(limit, lease_seconds=self._lease)
            attempts = [
                DeliveryAttempted(
                    **_ids(c.delivery), attempt=c.attempt, message_id=c.delivery.message_id
                )
                for c in claimed
            ]
            await uow.record(attempts)
        for item in unreadable:
            await self._unreadable(item, progress)
        return claimed, len(claimed) + len(unreadable)

    async def _deliver(self, item: Claimed, progress: Progress | None) -> None:
        """Send one, and record its outcome at once: the repeat window after a crash is
        only the messages in flight, not the whole batch."""
        outcome = await self._send(item, progress)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._outcomes.append(_Outcome(item, outcome, future, progress))
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record_outcomes())
        await future

    async def _record_outcomes(self) -> None:
        """Record the outcomes of the sends that have ended, those that end meanwhile in
        the next round: group commit. Each round is one transaction and one wait for the
        audit log's append lock, however many sends it records (under load that lock is
        queued for, so one transaction per outcome made each one wait its turn). A round
        runs in a task of its own, so a send's outcome is recorded even when the task
        that sent it is cancelled (a stop) while it waits."""
        while self._outcomes:
            batch, self._outcomes = self._outcomes, []
            try:
                await self._record_round(batch)
            except BaseException as error:
                for outcome in batch:
                    if not outcome.future.done():
                        outcome.future.set_exception(error)
                if isinstance(error, asyncio.CancelledError):
                    raise
            else:
                for outcome in batch:
                    if not outcome.future.done():
                        outcome.future.set_result(None)

    async def _record_round(self, batch: list[_Outcome]) -> None:
        """Every outcome of ``batch`` in one transaction; when that fails for anything but
        an outage, each one in its own (one that fails alone fails alone)."""
        try:
            async with self._unit_of_work() as uow:
                for outcome in batch:
                    await self._record_in(uow, outcome.item, outcome.outcome)
        except Exception as error:
            if is_outage(error):
                raise
            if len(batch) == 1:
                await self._record_alone(batch[0], error)
                return
            for outcome in batch:
                try:
                    async with self._unit_of_work() as uow:
                        await self._record_in(uow, outcome.item, outcome.outcome)
                except Exception as alone:
                    if is_outage(alone):
                        raise
                    await self._record_alone(outcome, alone)

    async def _record_in(
        self, uow: NotifierUnitOfWork, item: Claimed, outcome: str | BaseException
    ) -> None:
        if isinstance(outcome, str):
            await self._succeeded(uow, item, outcome)
        else:
            await self._failed(uow, item, outcome)

    async def _record_alone(self, recorded: _Outcome, error: Exception) -> None:
        item, outcome, progress = recorded.item, recorded.outcome, recorded.progress
        # a bug in recording this one outcome: keep at least the table right, so a
        # sent message is not sent again and a failed one waits its back-off
        log.error(
            "notifier.outcome_not_recorded",
            delivery_id=str(item.delivery.delivery_id),
            traceback=failure_traceback(error),
        )
        _item_failed(progress, item.delivery.delivery_id, error)
        async with self._unit_of_work() as uow:
            if isinstance(outcome, str):
                await uow.mark_sent(item.delivery.delivery_id)
            else:
                retry_at = self._retry_at(item.attempt, item.give_up_at)
                await uow.mark_failed(item.delivery.delivery_id, _reason(outcome), retry_at)

    async def _send(self, item: Claimed, progress: Progress | None) -> str | BaseException:
        sender = self._senders.get(item.delivery.channel)
        if sender is None:
            return LookupError(f"no sender for channel {item.delivery.channel!r}")
        deadline = asyncio.timeout(self._send_timeout)
        try:
            async with deadline:
                return await sender.send(
                    as_sent(
                        item.delivery,
                        self._links.message_link,
                        self._rosters,
                        self._links.issue_url,
                    )
                )
        except TimeoutError as error:
            if deadline.expired():
                return TimeoutError(
                    f"the attempt did not end within {self._send_timeout:g} s "
                    "(VIGIL_NOTIFIER_SEND_TIMEOUT_SECONDS) and was abandoned"
                )
            return error
        except SEND_ERRORS as error:
            return error
        except Exception as error:
            # not the server's answer: the message could not be built or sent (content an
            # adapter cannot take, a bug). A failed attempt like any other, so it neither
            # stops the worker nor holds up the deliveries behind it.
            log.error(
                "notifier.delivery_crashed",
                delivery_id=str(item.delivery.delivery_id),
                traceback=failure_traceback(error),
            )
            _item_failed(progress, item.delivery.delivery_id, error)
            return error

    def _retry_at(self, attempt: int, give_up_at: datetime | None) -> datetime | None:
        """When to try again, or None: past the channel's give-up time, fall back."""
        delay = retry_delay(attempt, maximum=self._retry_max, rng=self._rng)
        retry_at = self._clock.now() + timedelta(seconds=delay)
        return None if give_up_at is not None and retry_at > give_up_at else retry_at

    async def _unreadable(self, item: Unreadable, progress: Progress | None) -> None:
        """A claimed delivery whose stored message does not parse: a failed attempt with
        the reason; past its give-up time it is abandoned (there is no message to render
        on another channel: the signal's other deliveries, the escalation and the
        watchdog still stand)."""
        reason = f"stored message cannot be read: {failure_summary(item.error)}"
        retry_at = self._retry_at(item.attempt, item.give_up_at)
        _item_failed(progress, item.ids["delivery_id"], reason)
        async with self._unit_of_work() as uow:
            try:
                events: list[EventPayload] = [
                    DeliveryFailed(
                        **item.ids, attempt=item.attempt, error=reason, retry_at=retry_at
                    )
                ]
                if retry_at is None:
                    nobody = {"to_delivery_id": None, "to_person_id": None, "to_channel": None}
                    events.append(DeliveryFellBack(**item.ids, **nobody))
            except ValueError as error:  # an old row without study or subject
                log.error("notifier.unreadable_delivery_unrecorded", error=failure_summary(error))
                events = []
            await uow.record(events)  # before the row: see _succeeded
            await uow.mark_failed(item.ids["delivery_id"], reason, retry_at)
        metrics.record_delivery(item.ids["channel"], "failed", None)
        log.warning(
            "notifier.delivery_failed",
            delivery_id=str(item.ids["delivery_id"]),
            signal_id=str(item.ids["signal_id"]),
            channel=item.ids["channel"],
            attempt=item.attempt,
            retry_at=retry_at.isoformat() if retry_at else None,
            error=reason,
        )

    async def _succeeded(self, uow: NotifierUnitOfWork, item: Claimed, detail: str) -> None:
        # the outcome is appended before the delivery's row is touched: the signal handler
        # appends (the event store's append lock) before it cancels a withdrawn signal's
        # pending rows, so taking them in the other order here could deadlock with it
        event = DeliverySucceeded(**_ids(item.delivery), attempt=item.attempt, detail=detail[:500])
        await uow.record([event])
        await uow.mark_sent(item.delivery.delivery_id)
        # the signal's time and correlation id: for latency, and to follow one result from
        # ingest to this message in the logs
        signal = await uow.signal_record(item.delivery.signal_id)
        metrics.record_delivery(
            item.delivery.channel, "sent", signal.recorded_at if signal else None
        )
        log.info(
            "notifier.delivery_sent",
            delivery_id=str(item.delivery.delivery_id),
            signal_id=str(item.delivery.signal_id),
            channel=item.delivery.channel,
            attempt=item.attempt,
            correlation_id=signal.correlation_id if signal else None,
        )

    async def _failed(self, uow: NotifierUnitOfWork, item: Claimed, error: BaseException) -> None:
        delivery = item.delivery
        retry_at = self._retry_at(item.attempt, item.give_up_at)
        reason = _reason(error)
        events: list[EventPayload] = [
            DeliveryFailed(
                **_ids(delivery), attempt=item.attempt, error=reason[:1000], retry_at=retry_at
            )
        ]
        if retry_at is None:
            events.append(await self._fall_back(uow, delivery))
        await uow.record(events)  # before the row: see _succeeded
        await uow.mark_failed(delivery.delivery_id, reason, retry_at)
        metrics.record_delivery(delivery.channel, "failed", None)
        log.warning(
            "notifier.delivery_failed",
            delivery_id=str(delivery.delivery_id),
            signal_id=str(delivery.signal_id),
            channel=delivery.channel,
            attempt=item.attempt,
            retry_at=retry_at.isoformat() if retry_at else None,
            error=reason,
        )

    async def _fall_back(
        self, uow: NotifierUnitOfWork, failed: PlannedDelivery
    ) -> DeliveryFellBack:
        """The person's next channel, else their backup's first: planned now."""
        planned = self._fallback_for(failed)
        if planned is not None:
            await uow.add_deliveries([planned], give_up_after_seconds=self._give_up_after)
        return DeliveryFellBack(
            **_ids(failed),
            to_delivery_id=planned.delivery_id if planned else None,
            to_person_id=planned.person_id if planned else None,
            to_channel=planned.channel if planned else None,
        )

    def _fallback_for(self, failed: PlannedDelivery) -> PlannedDelivery | None:
        roster = self._rosters.get(failed.study_id)
        person = roster.person(failed.person_id) if roster else None
        if roster is None or person is None:
            return None
        addresses = [(c.kind, c.address) for c in person.channels]
        here = (
            addresses.index((failed.channel, failed.recipient))
            if ((failed.channel, failed.recipient) in addresses)
            else len(addresses)
        )
        if here + 1 < len(addresses):
            target, channel = person, person.channels[here + 1]
        else:
            backup = roster.backup_of(person.id)
            if backup is None:
                return None
            target, channel = backup, backup.channels[0]
        # the target acknowledges as themself: links of their own, the digest's included
        now = self._clock.now()
        (link,) = relinked([failed.link], target.id, self._links, now)
        return compose(
            failed.content,
            purpose=failed.purpose,
            person_id=target.id,
            channel=channel.kind,
            address=channel.address,
            link=link,
            item_links=relinked(failed.item_links, target.id, self._links, now),
        )
