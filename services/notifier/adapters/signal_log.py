"""The signal events of the audit log, as the notifier's catch-up reads them, and the
catch-up's checkpoint.

The checkpoint is a row of ``projection_checkpoints`` (the table every log follower keeps
its position in): the catch-up locks it for a round, so of several notifier instances one
reads and the others skip that round, and moves it in the transaction that handled what it
read. Positions are gapless and become visible in order (the event store's append lock), so
once a position is visible every position before it is too: the checkpoint never passes an
event that a slower transaction would commit later.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg
import orjson

from services.notifier.domain.planning import ANSWERED_ISSUES
from shared.events import (
    DataQualityIssueRaised,
    Envelope,
    SafetySignalAmended,
    SafetySignalEscalated,
    SafetySignalRaised,
    SafetySignalReopened,
    SafetySignalResolved,
    SafetySignalRetracted,
    SafetySignalRouted,
)
from shared.eventstore import EventSelection, PostgresEventStore
from shared.eventstore.postgres import read_selected_sql, selection_sql

CHECKPOINT = "notifier.catch-up"
# Every event the notifier answers: the signal events, and every kind of data-quality
# issue (each reaches the medical monitors or the data manager: see DATA_QUALITY_ROUTES in
# services/notifier/domain/planning.py). Migration 0015 (after 0011, 0013 and 0014)
# indexes exactly these (events_notifier_causes_idx): a kind added here needs a migration
# that recreates the index with it.
SIGNAL_TYPES: tuple[str, ...] = tuple(
    cls.event_type
    for cls in (
        SafetySignalRaised,
        SafetySignalEscalated,
        SafetySignalAmended,
        SafetySignalResolved,
        SafetySignalReopened,
        SafetySignalRetracted,
        SafetySignalRouted,
    )
)
# ANSWERED_ISSUES lists the kinds in the order DATA_QUALITY_ROUTES does: CAUSES_SQL's text
# (and so the order) must equal the partial index's condition in migration 0015.
CAUSE_TYPES: tuple[str, ...] = (*SIGNAL_TYPES, DataQualityIssueRaised.event_type)


# The events the catch-up reads. PostgreSQL reads the selection's values as literals: only
# then can the planner prove that the query's condition implies the partial index's (the
# same text as in migration 0015; tests/unit/test_notifier_catch_up_index.py checks it).
CAUSES = EventSelection(
    types=SIGNAL_TYPES,
    payload_type=DataQualityIssueRaised.event_type,
    payload_field="issue",
    payload_values=ANSWERED_ISSUES,
)
CAUSES_SQL = selection_sql(CAUSES)


@dataclass(frozen=True)
class LoggedCause:
    """One signal event as the audit log holds it; ``due``: older than the grace period."""

    position: int
    event_id: uuid.UUID
    type: str
    envelope_text: str
    payload_text: str
    due: bool

    def envelope(self) -> Envelope:
        """The event as the rules service published it (the same envelope, so the same
        ``time`` and ids the fast path saw)."""
        envelope = orjson.loads(self.envelope_text)
        return Envelope.model_validate({**envelope, "data": orjson.loads(self.payload_text)})


@dataclass(frozen=True)
class Behind:
    """How far the catch-up is behind the log: signal events after its checkpoint, and
    the age of the oldest of them (None: none)."""

    events: int
    oldest_age_seconds: float | None


async def lock_checkpoint(connection: asyncpg.Connection) -> int | None:
    """The checkpoint, locked for the caller's transaction; None while another instance
    holds it (that instance is reading: skip this round)."""
    await connection.execute(
        "INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING",
        CHECKPOINT,
    )
    position: int | None = await connection.fetchval(
        "SELECT position FROM projection_checkpoints WHERE name = $1 FOR UPDATE SKIP LOCKED",
        CHECKPOINT,
    )
    return position


async def advance(connection: asyncpg.Connection, position: int) -> None:
    """Move the checkpoint (the caller holds its lock)."""
    await connection.execute(
        "UPDATE projection_checkpoints SET position = $2, updated_at = clock_timestamp() "
        "WHERE name = $1",
        CHECKPOINT,
        position,
    )


async def log_head(connection: asyncpg.Connection) -> int:
    """The last position of the log (0: empty)."""
    position, _ = await PostgresEventStore(connection).head()
    return position


# Signal events in (after, upto], oldest first, each with whether the grace has passed:
# the query the event store runs ($1 after, $2 upto, $3 limit, $4 grace seconds).
READ_CAUSES = read_selected_sql(CAUSES)


async def read_causes(
    connection: asyncpg.Connection,
    *,
    after: int,
    upto: int,
    limit: int,
    grace_seconds: float,
) -> list[LoggedCause]:
    """Up to ``limit`` signal events in (``after``, ``upto``], in position order."""
    read = await PostgresEventStore(connection).read_selected(
        CAUSES, after=after, upto=upto, limit=limit, grace_seconds=grace_seconds
    )
    return [
        LoggedCause(
            cause.event.position,
            cause.event.event_id,
            cause.event.type,
            cause.event.envelope_text,
            cause.event.payload_text,
            cause.due,
        )
        for cause in read
    ]


async def behind(connection: asyncpg.Connection) -> Behind:
    """Signal events after the checkpoint, and the age of the oldest."""
    backlog = await PostgresEventStore(connection).selected_backlog(
        CAUSES, after=await checkpoint(connection)
    )
    return Behind(backlog.events, backlog.oldest_age_seconds)


async def checkpoint(connection: asyncpg.Connection) -> int:
    """Where the catch-up is (0: it has not run yet)."""
    position: int | None = await connection.fetchval(
        "SELECT position FROM projection_checkpoints WHERE name = $1", CHECKPOINT
    )
    return position or 0
