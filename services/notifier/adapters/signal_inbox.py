"""The inbox read model in PostgreSQL (``signal_inbox``, migration 0017): the projection
that keeps it, and the queries the workspace's inbox asks of it.

A batch costs at most two statements whatever its size: the rows of the signals its
events name, and one upsert of the rows that changed (the events come with their recorded
times). The fold itself is pure (services/notifier/domain/signal_inbox.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, fields
from typing import Any

import asyncpg
import orjson

from services.notifier.domain.inbox_filters import InboxFilters, Scope
from services.notifier.domain.signal_inbox import (
    USED_TYPES,
    InboxEvent,
    InboxRow,
    InboxState,
    fold,
)
from shared.eventstore import PayloadEvent

PROJECTION = "signal_inbox"
_COLUMNS = [f.name for f in fields(InboxRow)]
# a row's scope: its (study, site) is one of the pairs, a pair's NULL site meaning any
_IN_SCOPE = (
    "EXISTS (SELECT 1 FROM unnest($1::text[], $2::text[]) AS g (study, site) "
    "WHERE g.study = i.study_id AND (g.site IS NULL OR g.site = i.site_id))"
)


class SignalInboxProjection:
    """Feeds ``signal_inbox`` from the audit log (run by shared.projections)."""

    name = PROJECTION

    async def reset(self, connection: asyncpg.Connection) -> None:
        await connection.execute("DELETE FROM signal_inbox")

    async def apply(self, connection: asyncpg.Connection, events: Sequence[PayloadEvent]) -> None:
        used = [e for e in events if e.type in USED_TYPES and "signal_id" in e.payload]
        if not used:
            return
        inbox_events = [InboxEvent(e.position, e.type, e.recorded_at, e.payload) for e in used]
        ids = {event.signal_id for event in inbox_events} - {None}
        stored = {
            row.signal_id: row
            for row in await _rows(
                connection,
                "SELECT * FROM signal_inbox WHERE signal_id = ANY($1::uuid[])",
                list(ids),
            )
        }
        changed = fold(stored, inbox_events)
        if changed:
            await _write(connection, list(changed.values()))


def _document(row: InboxRow) -> dict[str, Any]:
    document = asdict(row)
    document["state"] = row.state
    return document


async def _write(connection: asyncpg.Connection, rows: list[InboxRow]) -> None:
    columns = ", ".join([*_COLUMNS, "state"])
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in [*_COLUMNS, "state"] if c != "signal_id")
    await connection.execute(
        f"""INSERT INTO signal_inbox ({columns})
            SELECT {columns} FROM jsonb_populate_recordset(NULL::signal_inbox, $1::jsonb)
            ON CONFLICT (signal_id) DO UPDATE SET {updates}""",
        orjson.dumps([_document(row) for row in rows]).decode(),
    )


def _row(record: asyncpg.Record) -> InboxRow:
    values = {name: record[name] for name in _COLUMNS}
    values["signal_id"] = uuid.UUID(str(record["signal_id"]))  # asyncpg's own UUID type
    return InboxRow(**values)


async def _rows(
    connection: asyncpg.Connection | asyncpg.Pool, sql: str, *args: Any
) -> list[InboxRow]:
    return [_row(record) for record in await connection.fetch(sql, *args)]


def _narrowing(filters: InboxFilters, first: int, *, with_state: bool) -> tuple[str, list[Any]]:
    """The SQL conditions of the rule, grade (and state) filters, numbered from ``first``."""
    conditions, values = [], []
    chosen: list[tuple[str, Any]] = [("rule_id", filters.rule), ("grade", filters.grade)]
    if with_state:
        chosen.append(("state", filters.state))
    for column, value in chosen:
        if value is not None:
            values.append(value)
            conditions.append(f"i.{column} = ${first + len(values) - 1}")
    return "".join(f" AND {c}" for c in conditions), values


class SignalInbox:
    """What the workspace reads of the inbox; every query is bounded by a scope."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def rows(self, scope: Scope, filters: InboxFilters, *, limit: int) -> list[InboxRow]:
        """Open signals first, soonest (or most overdue) deadline first; then the others,
        the latest change first."""
        if not scope.pairs:
            return []
        narrowing, values = _narrowing(filters, 4, with_state=True)
        return await _rows(
            self._pool,
            f"""SELECT * FROM signal_inbox AS i WHERE {_IN_SCOPE}{narrowing}
                ORDER BY (i.state = 'open') DESC,
                         CASE WHEN i.state = 'open' THEN i.acknowledge_by END ASC NULLS LAST,
                         i.last_change_at DESC, i.signal_id
                LIMIT $3""",
            scope.studies,
            scope.sites,
            limit,
            *values,
        )

    async def counts(self, scope: Scope, filters: InboxFilters) -> dict[InboxState, int]:
        """How many signals of the scope are in each state, under every filter but the
        state itself."""
        counts: dict[InboxState, int] = {
            "open": 0,
            "acknowledged": 0,
            "resolved": 0,
            "retracted": 0,
        }
        if not scope.pairs:
            return counts
        narrowing, values = _narrowing(filters, 3, with_state=False)
        for record in await self._pool.fetch(
            f"SELECT i.state, count(*) AS n FROM signal_inbox AS i WHERE {_IN_SCOPE}{narrowing} "
            "GROUP BY i.state",
            scope.studies,
            scope.sites,
            *values,
        ):
            counts[record["state"]] = record["n"]
        return counts

    async def changes_since(
        self, scope: Scope, filters: InboxFilters, since: int
    ) -> tuple[int, int]:
        """How many signals of the scope (and filters) were raised, and how many changed
        at all, after the position ``since``."""
        if not scope.pairs:
            return 0, 0
        narrowing, values = _narrowing(filters, 4, with_state=True)
        record = await self._pool.fetchrow(
            f"""SELECT count(*) FILTER (WHERE i.raised_position > $3) AS raised,
                       count(*) AS changed
                  FROM signal_inbox AS i
                 WHERE i.position > $3 AND {_IN_SCOPE}{narrowing}""",
            scope.studies,
            scope.sites,
            since,
            *values,
        )
        return int(record["raised"]), int(record["changed"])

    async def rules(self, scope: Scope) -> list[tuple[str, str]]:
        """The rules (id, title) the scope's signals were raised by, for the filter."""
        if not scope.pairs:
            return []
        records = await self._pool.fetch(
            f"SELECT DISTINCT ON (i.rule_id) i.rule_id, i.rule_title FROM signal_inbox AS i "
            f"WHERE {_IN_SCOPE} ORDER BY i.rule_id LIMIT 200",
            scope.studies,
            scope.sites,
        )
        return [(r["rule_id"], r["rule_title"]) for r in records]

    async def position(self) -> int:
        """How far the inbox has read the audit log (its checkpoint)."""
        value = await self._pool.fetchval(
            "SELECT position FROM projection_checkpoints WHERE name = $1", PROJECTION
        )
        return int(value or 0)

    async def row(self, signal_id: uuid.UUID) -> InboxRow | None:
        found = await _rows(
            self._pool, "SELECT * FROM signal_inbox WHERE signal_id = $1", signal_id
        )
        return found[0] if found else None
