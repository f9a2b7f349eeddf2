"""Found while breaking issue 16's ports from outside: one seeded random sequence of
appends (new events, events again, other content under a known id, expected versions
right and wrong) run on the in-memory event store and on PostgreSQL's, then every read
of the port compared between the two."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.events import Envelope, subject_stream, wrap
from shared.eventstore import (
    EventSelection,
    EventStore,
    InMemoryEventStore,
    NewEvent,
    PayloadMatch,
    PostgresEventStore,
)
from tests.contract.test_event_store_contract import (
    ISSUE,
    LAB,
    RAISED,
    RESOLVED,
    STUDY,
    escalated,
    issue,
    resolved,
    result,
    signal_raised,
)

pytestmark = pytest.mark.integration
AT = datetime(2026, 6, 1, 12, tzinfo=UTC)
STEPS = 60
SELECTION = EventSelection(
    types=(RAISED,), payload_type=ISSUE, payload_field="issue", payload_values=("missing-input",)
)
MATCHES = (
    PayloadMatch((LAB, ISSUE), "subject_id", ("A", "C")),
    PayloadMatch((ISSUE,), "issue", ("unknown-subject",)),
)


def script(seed: int) -> list[tuple[list[Envelope], dict[str, int] | None]]:
    rng = random.Random(seed)
    subjects = ["A", "B", "C"]
    made: list[Envelope] = []
    signals: list[Envelope] = []
    batches: list[tuple[list[Envelope], dict[str, int] | None]] = []
    for _ in range(STEPS):
        batch: list[Envelope] = []
        for _ in range(rng.randint(1, 4)):
            subject = rng.choice(subjects)
            kind = rng.random()
            if kind < 0.35:
                event = result(subject, rng.choice(["7.0", "9.5", "12.0"]), n=rng.randint(0, 40))
            elif kind < 0.5:
                event = signal_raised(subject)
                signals.append(event)
            elif kind < 0.6 and signals:
                signal = rng.choice(signals)
                event = resolved(signal) if rng.random() < 0.5 else escalated(signal, 3)
            elif kind < 0.7:
                event = issue(subject, rng.choice(["missing-input", "unknown-subject"]))
            elif kind < 0.9 and made:
                event = rng.choice(made)  # again
            elif made:
                other = result("A", "1.0", n=rng.randint(41, 99))
                event = wrap(other.payload(), source="/tests", event_id=rng.choice(made).id)
            else:
                event = result(subject)
            batch.append(event)
            made.append(event)
        expected = None
        if rng.random() < 0.2:
            expected = {subject_stream(STUDY, rng.choice(subjects)): rng.randint(0, 6)}
        batches.append((batch, expected))
    return batches


Script = list[tuple[list[Envelope], dict[str, int] | None]]


async def run(store: EventStore, batches: Script) -> list[Any]:
    seen: list[Any] = []
    for n, (batch, expected) in enumerate(batches):
        try:
            appended = await store.append(
                [NewEvent(e) for e in batch],
                expected_versions=expected,
                recorded_at=AT + timedelta(seconds=n),
            )
            # ``new`` included for an id repeated within its batch too: both stores answer
            # it the same way since that finding was fixed (test_found_i16_contracts.py)
            seen.append([(a.position, a.stream_id, a.stream_version, a.new) for a in appended])
        except Exception as error:  # the conflicts: compared by type
            seen.append(type(error).__name__)
    everything = await store.read_all()
    ids = [*(e.event_id for e in everything), uuid.uuid4()]
    streams = [*sorted({e.stream_id for e in everything}), "nobody"]
    types = [LAB, RAISED, RESOLVED, ISSUE]
    seen += [
        everything,
        await store.read_all(after_position=3, limit=5),
        await store.read_payloads(after_position=2, limit=7),
        await store.head(),
        await store.stored_ids(ids),
        await store.read_events(reversed(ids)),
        await store.positions_of(ids),
        await store.existing_streams(streams),
        await store.read_streams_after(dict.fromkeys(streams, 1)),
        await store.read_streams_of_types(streams, [LAB, ISSUE]),
        await store.read_types_between(types, after=2, upto=40),
        await store.read_study_subject_events(STUDY, types),
        await store.read_subject_events(STUDY, "A", types),
        await store.read_study_events(STUDY, [RESOLVED], matching=MATCHES),
        *[await store.read_matching(match) for match in MATCHES],
        await store.read_latest_of_type(ISSUE, [STUDY, "NCT-X"], limit=7),
        await store.last_of_type_in_streams(streams, RAISED),
        await store.read_open_streams(
            "subject-", [LAB, RAISED], turning_types=[RAISED, RESOLVED], closing_types=[RESOLVED]
        ),
        await store.read_selected(SELECTION, after=1, upto=10_000, limit=20, grace_seconds=0),
        (await store.selected_backlog(SELECTION, after=1)).events,
    ]
    for stream in streams:
        seen += [
            await store.read_stream(stream, after_version=1),
            await store.last_of_type(stream, LAB),
            await store.count_of_type(stream, LAB, after_version=1),
        ]
    for event in everything:
        seen.append(await store.find_event(event.event_id, event.type))
        if event.type == RAISED:
            signal_id = uuid.UUID(str(event.payload["signal_id"]))
            seen.append(await store.read_signal_history(event.stream_id, signal_id))
    return seen


@pytest.mark.parametrize("seed", range(1, 6))
async def test_one_random_sequence_gets_the_same_answers_from_both(
    postgres_event_store: PostgresEventStore, seed: int
) -> None:
    batches = script(seed)
    in_memory = await run(InMemoryEventStore(), batches)
    in_postgres = await run(postgres_event_store, batches)
    assert len(in_memory) == len(in_postgres)
    for n, (memory, postgres) in enumerate(zip(in_memory, in_postgres, strict=True)):
        assert memory == postgres, f"answer {n}"
