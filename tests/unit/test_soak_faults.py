"""The soak's fault plan: every fault asked for, inside the stream, the same for one seed."""

from __future__ import annotations

from collections import Counter

from soak.config import FaultCounts
from soak.faults import plan


def test_the_plan_holds_every_fault_asked_for_within_the_stream() -> None:
    counts = FaultCounts()

    faults = plan(counts, duration=500.0, seed=13)

    assert Counter(f.kind for f in faults) == {
        "kill safety_rules": 20,
        "kill ingest": 5,
        "kill notifier": 5,
        "restart broker": 2,
        "restart postgres": 3,
        "smtp outage": 3,
    }
    assert all(0 < f.at < 500.0 for f in faults)
    assert [f.at for f in faults] == sorted(f.at for f in faults)


def test_the_same_seed_gives_the_same_plan_and_another_seed_another() -> None:
    counts = FaultCounts()

    assert plan(counts, 500.0, seed=1) == plan(counts, 500.0, seed=1)
    assert plan(counts, 500.0, seed=1) != plan(counts, 500.0, seed=2)


def test_no_faults_asked_for_gives_an_empty_plan() -> None:
    nothing = FaultCounts(0, 0, 0, 0, 0, 0)

    assert plan(nothing, 500.0, seed=1) == []
