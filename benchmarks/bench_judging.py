"""The rules service's own Python work per batch, without the broker or the database.

Parses the bench-rules trial's records and runs the real batch handler on a store kept in
memory (ids, cached histories), first over half the trial to fill the histories, then
times the other half. What it prints is the part of a batch that is the service's CPU
alone: a change to parsing, folding or judging shows here at once, free of the broker's
and PostgreSQL's noise. Prints figures; asserts nothing.

    python benchmarks/bench_judging.py --events 60000 --subjects 600 --batch 1000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench_rules import trial

from services.safety_rules.adapters.rule_pack_files import load_rule_packs
from services.safety_rules.domain.history import SubjectHistory
from services.safety_rules.domain.rule_pack import RulePack
from services.safety_rules.handlers.facts import handle_batch
from shared.events import Envelope
from shared.structured_logging import configure_logging

REPO = Path(__file__).resolve().parents[1]


class MemoryStore:
    """Just what the handler reads back: which ids are stored, and the cached histories
    (the handler folds every event of a judged subject into them itself)."""

    def __init__(self) -> None:
        self.ids: set[uuid.UUID] = set()
        self.cache: dict[tuple[str, str], SubjectHistory] = {}

    async def stored(self, event_ids: Sequence[uuid.UUID]) -> tuple[datetime, set[uuid.UUID]]:
        return datetime.now(UTC), {i for i in event_ids if i in self.ids}

    async def histories(
        self, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], SubjectHistory]:
        return {key: self.cache.setdefault(key, SubjectHistory(*key)) for key in keys}

    async def append(
        self,
        envelopes: Sequence[Envelope],
        *,
        expected_versions: Mapping[str, int],
        recorded_at: datetime,
    ) -> None:
        self.ids.update(envelope.id for envelope in envelopes)

    async def enqueue(self, items: Sequence[tuple[Envelope, str]]) -> None:
        return None


async def run(batches: list[list[bytes]], store: MemoryStore, packs: dict[str, RulePack]) -> int:
    done = 0
    for batch in batches:
        await handle_batch([Envelope.from_json(raw) for raw in batch], store, packs)
        done += len(batch)
        gc.collect(1)  # as the service paces its collector after each batch
        gc.freeze()
    return done


async def bench(events: int, subjects: int, size: int) -> None:
    configure_logging("WARNING", service="bench")
    packs = load_rule_packs(REPO / "studies")
    raw = [envelope.to_json() for envelope in trial(events, subjects)]
    batches = [raw[start : start + size] for start in range(0, len(raw), size)]
    half = len(batches) // 2
    store = MemoryStore()
    await run(batches[:half], store, packs)
    began = time.perf_counter()
    done = await run(batches[half:], store, packs)
    seconds = time.perf_counter() - began
    print(
        f"parse + judge: {done / seconds:>8,.0f} events/s, "
        f"{seconds * 1000 / len(batches[half:]):.1f} ms per batch of {size:,} "
        f"({subjects:,} subjects, histories filled by the first half)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--subjects", type=int, default=600)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(bench(args.events, args.subjects, args.batch))


if __name__ == "__main__":
    main()
