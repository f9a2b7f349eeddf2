"""The catch-up's partial index holds exactly the events the notifier answers."""

from __future__ import annotations

import re

from services.notifier.adapters.signal_log import ANSWERED_ISSUES, CAUSE_TYPES, CAUSES_SQL
from services.notifier.handlers import signals
from tests.support.services import REPO

MIGRATIONS = REPO / "shared" / "db" / "migrations"
HANDLERS = REPO / "services" / "notifier" / "handlers" / "signals.py"


def test_the_index_as_last_created_has_the_condition_the_catch_up_reads_with() -> None:
    creating = [
        path
        for path in sorted(MIGRATIONS.glob("*.sql"))
        if "CREATE INDEX events_notifier_causes_idx" in path.read_text()
    ]
    sql = creating[-1].read_text()
    assert "DROP INDEX IF EXISTS events_notifier_causes_idx" in sql or len(creating) == 1
    index = sql[sql.index("CREATE INDEX events_notifier_causes_idx") :]
    predicate = index[index.index("WHERE") + len("WHERE") : index.rindex(";")]

    # the same text: the planner uses a partial index only for a condition it can match
    assert " ".join(predicate.split()) == " ".join(CAUSES_SQL.split())


def test_every_payload_the_signal_handlers_answer_is_read_by_the_catch_up() -> None:
    source = HANDLERS.read_text()
    handled = set()
    for group in re.findall(r"isinstance\(payload, ([A-Za-z| ]+)\)", source):
        handled |= {name.strip() for name in group.split("|")}
    assert handled  # the dispatch is where the test looks for it
    assert {getattr(signals, name).event_type for name in handled} == set(CAUSE_TYPES)
    # the issues the handlers answer are the ones the catch-up reads, by construction
    assert "payload.issue in ANSWERED_ISSUES" in source
    assert signals.ANSWERED_ISSUES is ANSWERED_ISSUES
    assert {"unknown-subject", "abnormal-result-unreadable"} <= set(ANSWERED_ISSUES)
