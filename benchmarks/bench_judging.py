"""The rules service's own Python work per batch, without the broker or the database.

Parses the bench-rules trial's records and runs the real batch handler on a store kept in
memory (ids, cached histories), first over half the trial to fill the histories, then
times the other half. What it prints is the part of a batch that is the service's CPU
alone: a change to parsing, folding or judging shows here at once, free of the broker's
and PostgreSQL's noise. Prints figures; asserts nothing.

    python benchmarks/bench_judging.py --events 60000 --subjects 600 --batch 1000
    python benchmarks/bench_judging.py --prior 10,100,1000 --events 6000 --subjects 60

``--prior N`` (growth): each subject's enrolment and N earlier results are folded into its
history first (as the service reads them from the log), one warm-up result per subject
makes the first walk of each history, then ``--events`` later results are timed in this
process's CPU time: the per-event cost at each history length, free of the broker's and
PostgreSQL's noise and of other work on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from bench_rules import START, STUDY, enrolment, history_of, trial, warm_up

from services.safety_rules.adapters.rule_pack_files import load_rule_packs
from services.safety_rules.domain.history import SubjectHistory
from services.safety_rules.domain.rule_pack import RulePack
from services.safety_rules.handlers.facts import handle_batch
from shared.events import Envelope, LabResultReported, wrap
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


async def bench_prior(events: int, subjects: int, size: int, prior: int) -> float:
    """Events/s of ``events`` results judged after ``prior`` earlier ones per subject."""
    configure_logging("WARNING", service="bench")
    packs = load_rule_packs(REPO / "studies")
    store = MemoryStore()
    recorded_at = datetime.now(UTC)
    warming = warm_up(subjects, prior)
    for name in sorted({p.subject_id for p in (e.payload() for e in warming)}):
        for version, envelope in enumerate(history_of(name, prior), start=1):
            payload = envelope.payload()
            key = (payload.study_id, name)  # type: ignore[attr-defined]
            history = store.cache.setdefault(key, SubjectHistory(*key))
            history.apply(envelope.type, payload, envelope.id, recorded_at, version)
            store.ids.add(envelope.id)
    warm = [envelope.to_json() for envelope in warming]
    await run([warm[start : start + size] for start in range(0, len(warm), size)], store, packs)
    raw = [envelope.to_json() for envelope in trial(events, subjects, first=prior + 1)]
    batches = [raw[start : start + size] for start in range(0, len(raw), size)]
    # CPU time of this process: on a shared machine the wall clock counts other work too
    began = time.process_time()
    done = await run(batches, store, packs)
    return done / (time.process_time() - began)


def _haemoglobin(subject: str, n: int) -> Envelope:
    """An abnormal haemoglobin (grade 2 or 3 anaemia), collected after Day 0."""
    return wrap(
        LabResultReported(
            study_id=STUDY,
            subject_id=subject,
            loinc_code="718-7",
            value=Decimal("8.4") if n % 3 else Decimal("7.9"),
            unit="g/dL",
            reference_low=Decimal(12),
            reference_high=Decimal(16),
            collected_at=START + timedelta(days=2, hours=n),
            source_message_id=f"BENCH-OPEN-{subject}-{n}",
        ),
        source="/bench/open",
    )


async def bench_open(prior: int, subjects: int = 5, later: int = 100) -> float:
    """Events per CPU second of ``later`` abnormal results per subject after ``prior``
    that keep one anaemia episode open."""
    configure_logging("WARNING", service="bench")
    packs = load_rule_packs(REPO / "studies")
    store = MemoryStore()
    recorded_at = datetime.now(UTC)
    names = [f"O{n:03d}" for n in range(subjects)]
    for name in names:
        key = (STUDY, name)
        history = store.cache.setdefault(key, SubjectHistory(*key))
        facts = [wrap(enrolment(name), source="/bench/open")]
        facts += [_haemoglobin(name, n) for n in range(prior)]
        for version, envelope in enumerate(facts, start=1):
            history.apply(envelope.type, envelope.payload(), envelope.id, recorded_at, version)
            store.ids.add(envelope.id)
    await run([[_haemoglobin(name, prior).to_json() for name in names]], store, packs)
    batches = [
        [_haemoglobin(name, prior + 1 + n).to_json() for name in names] for n in range(later)
    ]
    began = time.process_time()
    done = await run(batches, store, packs)
    return done / (time.process_time() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--subjects", type=int, default=600)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument(
        "--prior", help="growth: a comma-separated list of prior results per subject"
    )
    parser.add_argument(
        "--open",
        help="growth, worst case: a comma-separated list of results an open episode has lasted",
    )
    args = parser.parse_args()
    if args.open:
        for prior in (int(part) for part in args.open.split(",")):
            rate = asyncio.run(bench_open(prior))
            print(
                f"open over {prior:>6,}: {rate:>8,.0f} events per CPU second, parse + judge",
                flush=True,
            )
        return
    if not args.prior:
        asyncio.run(bench(args.events, args.subjects, args.batch))
        return
    rates = {}
    for prior in (int(part) for part in args.prior.split(",")):
        rates[prior] = asyncio.run(bench_prior(args.events, args.subjects, args.batch, prior))
        first = next(iter(rates.values()))
        print(
            f"prior {prior:>6,}: {rates[prior]:>8,.0f} events per CPU second, parse + judge "
            f"({args.subjects:,} subjects; / first = {rates[prior] / first:.2f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
