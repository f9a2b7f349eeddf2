"""The audit log's unhashed index columns are derived from the hashed envelope, the same
way in Python (when appending) and in SQL (when verifying and exporting)."""

from __future__ import annotations

import pytest

from shared.eventstore.canonical import (
    HASHED_STUDY_SQL,
    HASHED_SUBJECT_SQL,
    INDEXED_STUDY_SQL,
    INDEXED_SUBJECT_SQL,
    subject_columns,
)
from tests.support.services import REPO

MIGRATIONS = REPO / "shared" / "db" / "migrations"
MIGRATION = MIGRATIONS / "0019_hashed_subject_index_without_reparsing.sql"


@pytest.mark.parametrize(
    ("study", "subject", "expected"),
    [
        ("NCT1", "NCT1/S-1", ("NCT1", "S-1")),
        ("NCT1", "NCT1/a/b", ("NCT1", "a/b")),  # after the first '/'
        ("NCT1", "no-slash", ("NCT1", "")),
        ("NCT1", "", ("NCT1", None)),
        (None, None, (None, None)),
    ],
)
def test_study_and_subject_columns_come_from_the_envelope_attributes(
    study: str | None, subject: str | None, expected: tuple[str | None, str | None]
) -> None:
    assert subject_columns(study, subject) == expected


def test_the_index_of_migration_0019_has_the_expressions_the_export_selects_by() -> None:
    def bare(text: str) -> str:
        return "".join(text.split())

    sql = MIGRATION.read_text()
    index = bare(sql[sql.index("CREATE INDEX events_hashed_subject_idx") :])

    # the same expressions: the planner uses an expression index only for one it matches
    assert bare(f"(({INDEXED_STUDY_SQL}), ({INDEXED_SUBJECT_SQL}), position)") in index


def test_the_indexed_expressions_read_the_hashed_ones_from_the_generated_column() -> None:
    # the generated column is the hashed text parsed (verify checks it stays generated)
    parsed = "((envelope_json)::jsonb"
    assert INDEXED_STUDY_SQL.replace("(envelope", parsed, 1) == HASHED_STUDY_SQL
    assert INDEXED_SUBJECT_SQL.replace("(envelope ", f"{parsed} ") == HASHED_SUBJECT_SQL
