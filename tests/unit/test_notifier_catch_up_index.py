"""The catch-up's partial index holds every kind of event the notifier answers."""

from __future__ import annotations

import re

from services.notifier.adapters.signal_log import CAUSE_TYPES
from services.notifier.handlers import signals
from shared.events import payload_class
from tests.support.services import REPO

MIGRATION = REPO / "shared" / "db" / "migrations" / "0013_notifier_catch_up.sql"


def test_the_index_of_migration_0013_lists_exactly_the_types_the_catch_up_reads() -> None:
    sql = MIGRATION.read_text()
    index = sql[sql.index("CREATE INDEX events_notifier_causes_idx") :]

    assert set(re.findall(r"'([a-z0-9_.]+)'", index)) == set(CAUSE_TYPES)


def test_every_payload_the_signal_handlers_answer_is_read_by_the_catch_up() -> None:
    source = (REPO / "services" / "notifier" / "handlers" / "signals.py").read_text()
    handled = set()
    for group in re.findall(r"isinstance\(payload, ([A-Za-z| ]+)\)", source):
        handled |= {name.strip() for name in group.split("|")}

    assert handled  # the dispatch is where the test looks for it
    assert {getattr(signals, name).event_type for name in handled} == set(CAUSE_TYPES)
    assert all(payload_class(name) for name in CAUSE_TYPES)
