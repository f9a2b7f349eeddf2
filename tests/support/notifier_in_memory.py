"""The notifier's handlers and delivery worker on the in-memory unit of work: the same
helpers as ``tests/support/notifier.py`` (by the same names), without a server.

The store's clock is the test's clock, so what the outbox holds is due when the test's
time says so; a recording sender stands in for the SMTP server.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from services.notifier import handlers
from services.notifier.adapters.in_memory import InMemoryNotifierUnitOfWork
from services.notifier.domain.deliveries import as_sent
from services.notifier.domain.messages import Delivery
from services.notifier.entrypoints.delivery_worker import DeliveryWorker, Sender
from services.notifier.handlers import NotifierContext
from shared.events import Envelope


def store_for(context: NotifierContext) -> InMemoryNotifierUnitOfWork:
    """An empty store on the context's clock."""
    return InMemoryNotifierUnitOfWork(context.clock)


async def plan(
    store: InMemoryNotifierUnitOfWork, context: NotifierContext, *envelopes: Envelope
) -> int:
    """What the signal consumer does with a batch, in one transaction."""
    return await handlers.handle_signals(store, list(envelopes), context)


def recipients(store: InMemoryNotifierUnitOfWork, purpose: str) -> list[str]:
    """Who a message with this purpose is planned for, in id order."""
    return sorted(
        row.delivery.person_id for row in store.outbox() if row.delivery.purpose == purpose
    )


def rendered(store: InMemoryNotifierUnitOfWork, context: NotifierContext, purpose: str) -> Delivery:
    """The first planned message with this purpose, rendered as it will be sent."""
    planned = [row.delivery for row in store.outbox() if row.delivery.purpose == purpose]
    assert planned, f"no message planned for {purpose}"
    return as_sent(planned[0], context.links.message_link, context.rosters)


def link_planned_for(
    store: InMemoryNotifierUnitOfWork, context: NotifierContext, person_id: str
) -> str:
    """The link the first message planned for ``person_id`` with one carries."""
    for row in store.outbox():
        if row.delivery.person_id == person_id and row.delivery.link is not None:
            return context.links.url(row.delivery.link)
    raise AssertionError(f"no message with a link planned for {person_id}")


def token_planned_for(
    store: InMemoryNotifierUnitOfWork, context: NotifierContext, person_id: str
) -> str:
    return link_planned_for(store, context, person_id).split("token=", 1)[1]


async def stream_types(store: InMemoryNotifierUnitOfWork, signal_id: uuid.UUID) -> list[str]:
    """The short type names of a notification stream, in order."""
    async with store:
        events = await store.notification_events(signal_id)
    return [type(event).event_type.split(".")[-2] for event in events]


@dataclass
class RecordingSender:
    """Accepts every message (but those to ``unreachable`` addresses) and keeps it."""

    unreachable: set[str] = field(default_factory=set)
    sent: list[Delivery] = field(default_factory=list)

    async def send(self, delivery: Delivery) -> str:
        if delivery.recipient in self.unreachable:
            raise ConnectionRefusedError(f"{delivery.recipient}: connection refused")
        self.sent.append(delivery)
        return "250 accepted"

    def kinds(self, subject_id: str) -> list[str]:
        """The word after ``[Vigil]`` in each subject line about the subject."""
        return sorted(
            d.subject_line.split()[1].rstrip(":") for d in self.sent if subject_id in d.subject_line
        )


def email_worker(
    store: InMemoryNotifierUnitOfWork,
    sender: Sender,
    context: NotifierContext,
    *,
    send_timeout_seconds: float = 30.0,
) -> DeliveryWorker:
    """A delivery worker that sends e-mail through ``sender``, on the context's clock."""
    return DeliveryWorker(
        None,
        {"email": sender},
        rosters=context.rosters,
        links=context.links,
        retry_max_seconds=1,
        give_up_after_seconds=60,
        send_timeout_seconds=send_timeout_seconds,
        clock=context.clock,
        unit_of_work=lambda: store,
    )


async def send_all(worker: DeliveryWorker) -> int:
    """Send until nothing is due; returns how many were tried."""
    sent = 0
    while tried := await worker.send_due():
        sent += tried
    return sent
