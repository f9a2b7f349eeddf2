"""The catch-up's partial index holds exactly the events the notifier answers."""

from __future__ import annotations

import re

from services.notifier.adapters.signal_log import ANSWERED_ISSUES, CAUSE_TYPES, CAUSES_SQL
from services.notifier.handlers import signals
from tests.support.services import REPO

MIGRATION = REPO / "shared" / "db" / "migrations" / "0011_notifier_catch_up.sql"
HANDLERS = REPO / "services" / "notifier" / "handlers" / "signals.py"


def test_the_index_of_migration_0011_has_the_condition_the_catch_up_reads_with() -> None:
    sql = MIGRATION.read_text()
    index = sql[sql.index("CREATE INDEX events_notifier_causes_idx") :]
    predicate = index[index.index("WHERE") + len("WHERE") : index.rindex(";")]

    # the same text: the planner uses a partial index only for a condition it can match
    assert " ".join(predicate.split()) == " ".join(CAUSES_SQL.split())


def test_every_payload_the_signal_handlers_answer_is_read_by_the_catch_up() -> None:
    source = HANDLERS.read_text()
    handled = set()
    for group in re.findall(r"isinstance\(payload, ([A-Za-z| ]+)\)", source):
        handled |= {name.strip() for name in group.split("|")}
    issues = set(re.findall(r'payload\.issue == "([a-z-]+)"', source))

    assert handled  # the dispatch is where the test looks for it
    assert {getattr(signals, name).event_type for name in handled} == set(CAUSE_TYPES)
    assert issues == set(ANSWERED_ISSUES)
