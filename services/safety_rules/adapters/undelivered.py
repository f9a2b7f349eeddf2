"""Which protocol-threshold and serious signals nobody has been told about, read from the
audit log alone: not from the notifier, which may be the very component that is stuck.

A signal counts as told once its notification stream holds a successful delivery or an
acknowledgement; a retracted signal needs telling no more. The log is followed by
position, so after the first read of the whole log each round reads only what is new,
plus the streams of the signals still waiting.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shared.events import SafetySignalRaised, SafetySignalRetracted, subject_stream
from shared.events.notifications import (
    DeliverySucceeded,
    SignalAcknowledged,
    notification_stream,
)
from shared.events.operations import watchdog_stream

_TOLD = [DeliverySucceeded.event_type, SignalAcknowledged.event_type]


@dataclass(frozen=True)
class UndeliveredSignal:
    """A signal nobody has been told about yet: ids and times only."""

    signal_id: uuid.UUID
    study_id: str
    subject_id: str
    rule_id: str
    recorded_at: datetime
    position: int


class UndeliveredSignals:
    """The raised protocol-threshold and serious signals not yet told, kept up to date
    from the log (reads of at most ``chunk`` positions at a time)."""

    def __init__(self, *, chunk: int = 50_000) -> None:
        self._chunk = chunk
        self._scanned = 0
        self._open: dict[uuid.UUID, UndeliveredSignal] = {}

    async def refresh(self, connection: asyncpg.Connection) -> list[UndeliveredSignal]:
        """Read what is new in the log; return the signals still waiting, oldest first."""
        head: int = await connection.fetchval("SELECT coalesce(max(position), 0) FROM events")
        while self._scanned < head:
            upto = min(self._scanned + self._chunk, head)
            rows = await connection.fetch(
                """SELECT position, study_id, subject_id, recorded_at,
                          payload->>'signal_id' AS signal_id, payload->>'rule_id' AS rule_id
                   FROM events
                   WHERE position > $1 AND position <= $2 AND type = $3
                     AND (payload->>'severity' = 'protocol-threshold'
                          OR (payload->>'serious')::boolean)""",
                self._scanned,
                upto,
                SafetySignalRaised.event_type,
            )
            for row in rows:
                signal_id = uuid.UUID(row["signal_id"])
                self._open[signal_id] = UndeliveredSignal(
                    signal_id,
                    row["study_id"],
                    row["subject_id"],
                    row["rule_id"],
                    row["recorded_at"],
                    row["position"],
                )
            self._scanned = upto
        if self._open:
            for signal_id in await self._settled(connection, list(self._open.values())):
                self._open.pop(signal_id, None)
        return sorted(self._open.values(), key=lambda signal: signal.position)

    async def _settled(
        self, connection: asyncpg.Connection, waiting: Sequence[UndeliveredSignal]
    ) -> set[uuid.UUID]:
        """The waiting signals someone was told about, or that were retracted."""
        by_stream = {notification_stream(s.signal_id): s.signal_id for s in waiting}
        told = await connection.fetch(
            "SELECT DISTINCT stream_id FROM events "
            "WHERE stream_id = ANY($1::text[]) AND type = ANY($2::text[])",
            list(by_stream),
            _TOLD,
        )
        retracted = await connection.fetch(
            """SELECT DISTINCT payload->>'signal_id' AS signal_id FROM events
               WHERE stream_id = ANY($1::text[]) AND type = $2
                 AND payload->>'signal_id' = ANY($3::text[])""",
            sorted({subject_stream(s.study_id, s.subject_id) for s in waiting}),
            SafetySignalRetracted.event_type,
            [str(s.signal_id) for s in waiting],
        )
        return {by_stream[row["stream_id"]] for row in told} | {
            uuid.UUID(row["signal_id"]) for row in retracted
        }


async def reported(
    connection: asyncpg.Connection, signals: Sequence[UndeliveredSignal]
) -> set[uuid.UUID]:
    """Which of these signals the watchdog has reported already."""
    by_stream = {watchdog_stream(s.signal_id): s.signal_id for s in signals}
    rows = await connection.fetch(
        "SELECT DISTINCT stream_id FROM events WHERE stream_id = ANY($1::text[])",
        list(by_stream),
    )
    return {by_stream[row["stream_id"]] for row in rows}
