"""What intake needs from storage and the broker: the receipt store and the event publisher.

PostgreSQL and Kafka implement them in ``adapters/receipts.py`` and ``adapters/publisher.py``;
``adapters/in_memory.py`` implements both for fast tests. One contract suite per port
(``tests/contract/``) runs against every implementation.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Literal, Protocol

from services.ingest.domain.authorization import (
    Decision,
    Ownership,
    RecordKey,
    Refusal,
    SubjectKey,
)


class StorageUnavailable(RuntimeError):
    """The message could not be recorded durably, so it must not be acknowledged."""


class BrokerUnavailable(RuntimeError):
    """The broker did not acknowledge the write in time; nothing may be assumed stored."""


@dataclass(frozen=True)
class Outgoing:
    """One record ingest must publish: an event, or a dead letter whose event is known."""

    event_id: uuid.UUID
    topic: str
    key: bytes | None
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Receipt:
    """A received message as it arrived."""

    channel: str
    source: str
    content_type: str | None
    raw: bytes
    outcome: Literal["accepted", "rejected"]
    reason: str | None = None
    principal_source: str | None = None
    """The authenticated source that sent it (None: not authenticated)."""
    credential: str | None = None
    """How that source was authenticated, e.g. ``api-key:<key id>``; never a secret."""
    raw_truncated: bool = False
    """Only the first bytes were kept (a body over the size cap, or a refused request
    whose whole body was never read)."""


@dataclass(frozen=True)
class Claims:
    """What a request would own if nobody did yet, and everything it touches (see
    ``authorization.claims``)."""

    owner: str
    enrolled: Mapping[SubjectKey, str]
    """Each subject it enrols, at the site of its first enrolment in the request."""
    records: Iterable[RecordKey]
    touched: Iterable[SubjectKey]


class ReceiptStore(Protocol):
    """Every message verbatim with the events it owes the audit log, kept before any
    answer; and the owed events the re-drive publishes again until they are settled.

    An owed event is settled once the audit log holds it (or the rules service
    dead-lettered it). Owed events are keyed by event id: a message sent again owes the
    same events, and the first row stands.
    """

    async def record(
        self,
        receipt: Receipt,
        outgoing: Sequence[Outgoing],
        receipt_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        """Keep the message and what it owes, in one transaction; returns its receipt id
        (``receipt_id`` when given: a dead letter names it before). Raises
        StorageUnavailable."""
        ...

    async def record_owned(
        self,
        receipt: Receipt,
        outgoing: Sequence[Outgoing],
        *,
        claims: Claims,
        judge: Callable[[Ownership], Decision],
    ) -> list[Refusal]:
        """In one transaction: claim for ``claims.owner`` what nobody owns, read the
        owners of everything the request touches, and ``judge`` the request against them.
        When the decision refuses anything, undo all of it (claims included) and return
        the refusals; otherwise move the subjects it moves and keep the message with what
        it owes. Raises StorageUnavailable."""
        ...

    async def mark_published(self, event_ids: Sequence[uuid.UUID]) -> None:
        """The broker acknowledged these owed events. Raises StorageUnavailable."""
        ...

    async def settle(self) -> int:
        """Forget owed events that are settled; returns how many."""
        ...

    def claim_overdue(self, limit: int) -> AbstractAsyncContextManager[list[Outgoing]]:
        """Up to ``limit`` owed events past their next check and not settled, claimed
        while the context lasts (no other claim returns them) and pushed back
        exponentially. An error leaving the context undoes the claim."""
        ...

    async def unrecorded(self) -> tuple[int, float | None]:
        """How many owed events are not settled, and the oldest one's age in seconds."""
        ...


class EventPublisher(Protocol):
    """Publishes records to their topics and returns once the broker acknowledged them
    (acks=all)."""

    async def publish(self, records: Sequence[Outgoing]) -> None:
        """Publish all records; return only when the broker acknowledged every one.
        Raises BrokerUnavailable."""
        ...

    async def publish_each(self, records: Sequence[Outgoing]) -> list[BaseException | None]:
        """Per record: None once acknowledged, or what went wrong (a record the broker
        refuses fails alone). Raises BrokerUnavailable only when the broker cannot be
        reached at all."""
        ...

    async def reachable(self, timeout: float = 2.0) -> bool:
        """Whether the broker answers now (for readiness)."""
        ...
