"""Anchors: chain heads recorded outside the events table.

The hash chain shows any change to a row, but not the removal of the newest rows: a
shorter chain is still a valid chain. So the head (position and hash) is written, now and
then, to a file that lives apart from the database (one JSON object per line), and to the
``audit_checkpoints`` table. ``vigil audit verify`` checks that every anchored position is
still there with the same hash (and, with ``--from-anchor``, resumes from the newest
verified anchor instead of re-hashing every row).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import asyncpg

from shared.clock import Clock, SystemClock
from shared.eventstore.postgres import store_id
from shared.eventstore.store import head

AnchorKind = Literal["verified", "anchored"]


@dataclass(frozen=True)
class Anchor:
    """A chain head as it was at ``recorded_at``."""

    store_id: str
    kind: AnchorKind
    position: int
    hash: str
    recorded_at: str

    @property
    def hash_bytes(self) -> bytes:
        return bytes.fromhex(self.hash)


def read_anchors(path: Path, store: uuid.UUID) -> list[Anchor]:
    """This store's anchors in the file, oldest first; none when the file does not exist."""
    if not path.exists():
        return []
    anchors = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            anchor = Anchor(**json.loads(line))
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path}:{number}: not an anchor record: {error}") from error
        if anchor.store_id == str(store):
            anchors.append(anchor)
    return anchors


def write_anchor(path: Path, anchor: Anchor) -> None:
    """Append one anchor and force it to disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as file:
        file.write(json.dumps(asdict(anchor), sort_keys=True) + "\n")
        file.flush()
        os.fsync(file.fileno())


async def record_anchor(
    connection: asyncpg.Connection,
    path: Path,
    kind: AnchorKind,
    *,
    position: int | None = None,
    hash_: bytes | None = None,
    clock: Clock | None = None,
) -> Anchor:
    """Anchor the given head (the current one by default) in the file and the table, at
    the time of ``clock`` (the system's by default)."""
    if position is None or hash_ is None:
        position, hash_ = await head(connection)
    anchor = Anchor(
        store_id=str(await store_id(connection)),
        kind=kind,
        position=position,
        hash=hash_.hex(),
        recorded_at=(clock or SystemClock()).now().isoformat(),
    )
    write_anchor(path, anchor)
    await connection.execute(
        "INSERT INTO audit_checkpoints (kind, position, hash) VALUES ($1, $2, $3)",
        kind,
        position,
        hash_,
    )
    return anchor


async def check_anchors(connection: asyncpg.Connection, anchors: list[Anchor]) -> list[str]:
    """Problems found: an anchored position that is gone or now carries another hash."""
    if not anchors:
        return []
    rows = await connection.fetch(
        "SELECT position, hash FROM events WHERE position = ANY($1::bigint[])",
        sorted({anchor.position for anchor in anchors if anchor.position > 0}),
    )
    found = {row["position"]: bytes(row["hash"]) for row in rows}
    problems = []
    for anchor in anchors:
        if anchor.position == 0:
            continue
        stored = found.get(anchor.position)
        if stored is None:
            problems.append(
                f"anchored position {anchor.position} ({anchor.kind} {anchor.recorded_at}) is "
                "gone: rows at the end of the log were removed"
            )
        elif stored != anchor.hash_bytes:
            problems.append(
                f"anchored position {anchor.position} ({anchor.kind} {anchor.recorded_at}) now "
                "has another hash: the log was rewritten"
            )
    return problems
