"""The event store owns the ``events`` table: no code outside ``shared/eventstore`` runs SQL
on it (issue 16 item 4), so the log's layout, locks and indexes are one module's business
and every caller goes through the EventStore port."""

from __future__ import annotations

import re

from tests.support.services import REPO

# SQL naming the table (our SQL is written in capitals, which keeps prose out), and the
# calls that name it as a string
SQL_ON_EVENTS = re.compile(
    r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE)\s+events\b|(?:_table|_privilege)\(\s*['\"]events['\"]"
)
SCANNED = ("services", "shared", "vigil")
OWNER = REPO / "shared" / "eventstore"


def sql_on_events(text: str) -> list[int]:
    """The line numbers of ``text`` that run SQL on the events table."""
    return [text.count("\n", 0, match.start()) + 1 for match in SQL_ON_EVENTS.finditer(text)]


def test_the_pattern_finds_sql_on_the_events_table_and_not_prose() -> None:
    assert sql_on_events('x = await c.fetch("SELECT 1 FROM events WHERE a = $1")') == [1]
    assert sql_on_events('"""WITH t AS (SELECT 1)\n   SELECT * FROM t JOIN events e"""') == [2]
    assert sql_on_events("await pool.fetchval(\"SELECT has_table_privilege('events', 'x')\")")
    assert sql_on_events('await c.copy_records_to_table("events", records=r)')
    assert sql_on_events('"""Turning accepted requests into events: pure."""') == []
    assert sql_on_events('hint="a role that may UPDATE the events table"') == []
    assert sql_on_events("SELECT 1 FROM dead_lettered_events") == []


def test_no_module_outside_the_event_store_runs_sql_on_the_events_table() -> None:
    offenders = []
    for top in SCANNED:
        for path in sorted((REPO / top).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            if path.is_relative_to(OWNER):
                continue
            offenders += [f"{relative}:{line}" for line in sql_on_events(path.read_text())]
    assert not offenders, (
        "SQL on the events table outside shared/eventstore (add a named query to the "
        f"EventStore port in shared/eventstore/ports.py instead): {', '.join(offenders)}"
    )
