"""Group commit: the receipts waiting at one moment, from every connection, kept in one
transaction (one WAL flush) by one writer task; then each sender is answered.

Each waiter's future resolves only once the transaction holding its receipt committed, so
nothing is answered before it is kept. A group whose transaction fails for a reason of its
own data (a value the database refuses, a deadlock with another instance, a request whose
ownership judgement refuses it) is rolled back whole and its members are kept one by one,
each in its own transaction as before group commit, so one poison message fails alone and
its neighbours are kept. A database that is away fails every member of the group with
StorageUnavailable (the sender is told to send again); the writer itself lives on and
takes the next group on a new connection.

Marks of published events ride along: they are hints (nothing reads ``published_at`` to
decide anything), so they are written in the next group's transaction, or alone without
waiting for their flush when no receipt came for ``mark_delay`` seconds (under load they
always ride along: a transaction of their own after every group cost four round trips);
no sender waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import asyncpg
import structlog

from services.ingest.adapters.ownership import (
    ClaimRequest,
    claim_and_read_group,
    move_subjects,
)
from services.ingest.domain.authorization import Decision, Ownership, Refusal, SubjectKey
from services.ingest.handlers.ports import Claims, Outgoing, Receipt, StorageUnavailable
from shared.db.pool import DATABASE_ERRORS
from shared.failures import failure_summary
from shared.supervision import Progress

log = structlog.get_logger(__name__)

# errors that say the database (or the way to it) is away: the whole group failed and
# retrying its members one by one now would only fail them again
_AWAY: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.InterfaceError,
)


@dataclass
class Owned:
    """One request waiting to be kept: its receipt, what it owes, what it claims, and how
    to judge it against the owners found."""

    receipt: Receipt
    outgoing: Sequence[Outgoing]
    claims: Claims
    judge: Callable[[Ownership], Decision]
    receipt_id: uuid.UUID = field(default_factory=uuid.uuid4)
    answer: asyncio.Future[list[Refusal]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Refused(Exception):
    """A request was refused: its claims (and its group's) must be undone."""

    def __init__(self, refusals: Sequence[Refusal]) -> None:
        super().__init__(f"{len(refusals)} event(s) refused")
        self.refusals = list(refusals)


Keep = Callable[[asyncpg.Connection, Sequence[Owned]], Awaitable[None]]
Mark = Callable[[asyncpg.Connection, Sequence[uuid.UUID]], Awaitable[None]]


class GroupCommitWriter:
    """Keeps owned receipts in groups, one transaction per group (see the module)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        keep: Keep,
        mark: Mark,
        max_group: int = 256,
        mark_delay: float = 0.05,
    ) -> None:
        self._pool = pool
        self._keep = keep
        self._mark = mark
        self._max_group = max_group
        self._waiting: list[Owned] = []
        self._published: list[uuid.UUID] = []
        self._wake = asyncio.Event()
        self._arrived = asyncio.Event()  # a receipt waits (marks alone do not set it)
        self._mark_delay = mark_delay
        self._connection: asyncpg.Connection | None = None

    async def submit(self, owned: Owned) -> list[Refusal]:
        """Wait until ``owned`` is kept (its refusals: nothing of it was kept). Raises
        StorageUnavailable, or what judging it raised."""
        self._waiting.append(owned)
        self._wake.set()
        self._arrived.set()
        return await owned.answer

    def mark_published(self, event_ids: Sequence[uuid.UUID]) -> None:
        """Note that the broker took these events; written with the next group's
        transaction, or alone once ``mark_delay`` passed with no group."""
        self._published.extend(event_ids)
        self._wake.set()

    async def run(self, progress: Progress) -> None:
        """The writer task: a group at a time, until cancelled."""
        progress.idle()
        try:
            await self._groups(progress)
        finally:
            await self._release()

    async def _groups(self, progress: Progress) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting or self._published:
                group: list[Owned] = []
                try:
                    if not self._waiting:
                        await self._await_receipt()  # marks alone: a group may carry them
                    group = self._waiting[: self._max_group]
                    del self._waiting[: len(group)]
                    progress.working()
                    await self._round(group)
                except BaseException as error:
                    # a bug or a cancellation: nobody may wait for an answer that never comes
                    stranded, self._waiting = [*group, *self._waiting], []
                    _fail(stranded, StorageUnavailable(f"the receipt writer stopped: {error!r}"))
                    raise
                progress.done(more=bool(self._waiting))

    async def _await_receipt(self) -> None:
        """Wait up to ``mark_delay`` for a receipt to keep."""
        self._arrived.clear()
        if self._waiting:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._arrived.wait(), self._mark_delay)

    async def _round(self, group: list[Owned]) -> None:
        """Keep ``group`` (answering each member) with the marks waiting, or only the
        marks when no receipt waits."""
        try:
            # one connection kept from round to round (no reset per group), given up when
            # the database is away
            if self._connection is None:
                self._connection = await self._pool.acquire()
            if group:
                await self._commit(self._connection, group)
            else:
                await self._mark_published(self._connection)
        except _AWAY as error:
            _fail(group, StorageUnavailable(f"cannot record the message durably: {error}"))
            await self._release()

    async def _release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await self._pool.release(connection)
            except DATABASE_ERRORS as error:  # a broken one is discarded
                log.warning("ingest.receipt_writer_release_failed", error=failure_summary(error))

    async def _commit(self, connection: asyncpg.Connection, group: list[Owned]) -> None:
        # the marks waiting ride in the group's transaction (no round trips of their own);
        # should the group fail, they are lost, as hints may be
        marks, self._published = self._published, []
        try:
            async with connection.transaction():
                await self._keep(connection, group)
                if marks:
                    await self._mark(connection, marks)
        except _AWAY:
            raise
        except Refused as refused:
            if len(group) == 1:
                _answer(group[0], refused.refusals)
                return
            await self._one_by_one(connection, group)  # its neighbours' claims are undone
            return
        except Exception as error:
            log.warning(
                "ingest.group_commit_split", members=len(group), error=failure_summary(error)
            )
            await self._one_by_one(connection, group)
            return
        for owned in group:
            _answer(owned, [])

    async def _one_by_one(self, connection: asyncpg.Connection, group: list[Owned]) -> None:
        """Each member in a transaction of its own: whatever broke the group fails alone."""
        for owned in group:
            await self._keep_alone(connection, owned)

    async def _keep_alone(self, connection: asyncpg.Connection, owned: Owned) -> None:
        try:
            async with connection.transaction():
                await self._keep(connection, [owned])
        except Refused as refused:
            _answer(owned, refused.refusals)
            return
        except _AWAY:
            raise
        except asyncpg.PostgresError as error:
            _fail([owned], StorageUnavailable(f"cannot record the message durably: {error}"))
            return
        except Exception as error:  # judging it broke: its sender hears of it, alone
            _fail([owned], error)
            return
        _answer(owned, [])

    async def _mark_published(self, connection: asyncpg.Connection) -> None:
        if not self._published:
            return
        marks, self._published = self._published, []
        try:
            async with connection.transaction():
                # a hint, not a fact: no sender waits for its flush
                await connection.execute("SET LOCAL synchronous_commit = off")
                await self._mark(connection, marks)
        except DATABASE_ERRORS as error:
            # published and acknowledged; the re-drive will only check it arrived
            log.warning("ingest.mark_published_failed", error=failure_summary(error))


def _answer(owned: Owned, refusals: list[Refusal]) -> None:
    if not owned.answer.done():  # a sender gone (cancelled) is not answered
        owned.answer.set_result(refusals)


def _fail(group: Sequence[Owned], error: BaseException) -> None:
    for owned in group:
        if not owned.answer.done():
            owned.answer.set_exception(error)


async def claim_judge_and_move(connection: asyncpg.Connection, group: Sequence[Owned]) -> None:
    """Claim what nobody owns, judge each request of ``group`` in turn against the owners
    (as if it came alone, after the ones before it: see ``ownership``), move the subjects
    they move; raise Refused when one is refused (the caller rolls back)."""
    requests = [
        ClaimRequest(
            owner=owned.claims.owner,
            receipt_id=owned.receipt_id,
            enrolled=owned.claims.enrolled,
            records=frozenset(owned.claims.records),
            touched=frozenset(owned.claims.touched),
        )
        for owned in group
    ]
    found = await claim_and_read_group(connection, requests)
    earlier: set[uuid.UUID] = set()
    moves: dict[SubjectKey, str] = {}
    for owned, request in zip(group, requests, strict=True):
        earlier.add(owned.receipt_id)
        decision = owned.judge(found.seen_by(request, earlier))
        if decision.refusals:
            raise Refused(decision.refusals)
        found.move(decision.moves)
        moves.update(decision.moves)
    await move_subjects(connection, moves)
