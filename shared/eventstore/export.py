"""Exporting a study's or a subject's full history, with hashes, for an inspector.

Each exported row carries what its hash covers (the jsonb texts exactly as stored, the
times) and its previous hash, so every row can be checked on its own with
``row_hash_matches``, without access to Vigil or its database.

Rows are selected by what their hashes cover: the study and subject their hashed envelope
names (``HASHED_STUDY_SQL``, ``HASHED_SUBJECT_SQL``), found through the index of migration
0019 on the same attributes of the ``envelope`` column generated from that text
(``INDEXED_STUDY_SQL``, ``INDEXED_SUBJECT_SQL``); the exported ``study_id`` and
``subject_id`` are those of the hashed text too. So a row whose unhashed study_id or
subject_id columns were edited is still exported with its subject; the export names such
rows (``ExportSummary.altered``) for ``vigil audit verify`` to report.
"""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TextIO

import asyncpg

from shared.eventstore.canonical import (
    HASHED_STUDY_SQL,
    HASHED_SUBJECT_SQL,
    INDEXED_STUDY_SQL,
    INDEXED_SUBJECT_SQL,
    canonical_bytes,
    chain_hash,
    epoch_micros,
)
from shared.eventstore.postgres_append import COLUMNS

ExportFormat = Literal["jsonl", "csv"]
# One field per stored column; the JSON texts are named without their ``_json`` suffix.
FIELDS = tuple(column.removesuffix("_json") for column in COLUMNS)
_HASHED = {"study_id": HASHED_STUDY_SQL, "subject_id": HASHED_SUBJECT_SQL}
_SELECT = ", ".join(
    [
        f"{column}::text" if column == "event_id" else f"{_HASHED.get(column, column)} AS {field}"
        for column, field in zip(COLUMNS, FIELDS, strict=True)
    ]
    + [
        f"(study_id IS NOT DISTINCT FROM {HASHED_STUDY_SQL} AND subject_id IS NOT DISTINCT "
        f"FROM {HASHED_SUBJECT_SQL}) AS columns_ok"
    ]
)


@dataclass
class ExportSummary:
    """How many events an export holds, and the positions among them whose stored
    study_id or subject_id columns differ from their hashed envelope (rows altered)."""

    count: int = 0
    altered: list[int] = field(default_factory=list)


async def exported_rows(
    connection: asyncpg.Connection, *, study: str, subject: str | None = None
) -> AsyncIterator[dict[str, Any]]:
    """The study's (or one subject's) events in position order, as flat records; each
    record's ``columns_ok`` says whether its stored columns match its hashed envelope."""
    arguments: list[Any] = [study] + ([subject] if subject else [])
    query = export_query(by_subject=bool(subject))
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        async for row in connection.cursor(query, *arguments, prefetch=2000):
            record = dict(row)
            record["clinical_time"] = _iso(row["clinical_time"])
            record["recorded_at"] = _iso(row["recorded_at"])
            record["prev_hash"] = bytes(row["prev_hash"]).hex()
            record["hash"] = bytes(row["hash"]).hex()
            yield record


def export_query(*, by_subject: bool) -> str:
    """The export's SQL: a study's rows ($1), or one subject's ($1, $2), in position order."""
    # found by the index on the generated column, kept only when the hashed text agrees
    condition = f"{INDEXED_STUDY_SQL} = $1 AND {HASHED_STUDY_SQL} = $1" + (
        f" AND {INDEXED_SUBJECT_SQL} = $2 AND {HASHED_SUBJECT_SQL} = $2" if by_subject else ""
    )
    return f"SELECT {_SELECT} FROM events WHERE {condition} ORDER BY position"


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="microseconds")


def row_hash_matches(record: dict[str, Any]) -> bool:
    """Whether an exported record's hash is the hash of its own content and previous hash."""
    clinical = record["clinical_time"]
    recorded_us = epoch_micros(datetime.fromisoformat(record["recorded_at"]))
    assert recorded_us is not None
    canonical = canonical_bytes(
        position=int(record["position"]),
        event_id=record["event_id"],
        stream_id=record["stream_id"],
        stream_version=int(record["stream_version"]),
        type=record["type"],
        schema_version=int(record["schema_version"]),
        clinical_time_us=epoch_micros(datetime.fromisoformat(clinical)) if clinical else None,
        recorded_at_us=recorded_us,
        source=record["source"],
        envelope_text=record["envelope"],
        payload_text=record["payload"],
    )
    return bool(chain_hash(bytes.fromhex(record["prev_hash"]), canonical).hex() == record["hash"])


async def write_export(
    connection: asyncpg.Connection,
    out: TextIO,
    *,
    study: str,
    subject: str | None = None,
    fmt: ExportFormat = "jsonl",
) -> ExportSummary:
    """Write the export; returns how many events it holds and which were altered."""
    summary = ExportSummary()
    writer = csv.DictWriter(out, fieldnames=FIELDS) if fmt == "csv" else None
    if writer is not None:
        writer.writeheader()
    async for record in exported_rows(connection, study=study, subject=subject):
        if not record.pop("columns_ok"):
            summary.altered.append(record["position"])
        if writer is not None:
            writer.writerow({k: "" if v is None else v for k, v in record.items()})
        else:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        summary.count += 1
    return summary


def read_export(lines: Iterable[str], fmt: ExportFormat) -> list[dict[str, Any]]:
    """Parse an export back into records (CSV empty cells become None)."""
    if fmt == "jsonl":
        return [json.loads(line) for line in lines if line.strip()]
    return [{k: (v if v != "" else None) for k, v in row.items()} for row in csv.DictReader(lines)]
