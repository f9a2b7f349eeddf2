"""The "skipped" figure: records a consumer stepped over.

For every position the rules service recorded in ``consumer_positions`` (sampled with its
``updated_at``), every record the topic tap read below it, in the same broker epoch, must
have been in the audit log by then (its event id stored, or for a dead letter its raw
bytes in the ``rejected-input`` stream). A record not recorded at all was skipped; one
recorded only afterwards was skipped too, and something else (ingest's re-drive) brought
it back. A record that is not a valid event counts as handled once the consumer has
dead-lettered it. Positions recorded within a few seconds of a broker restart are left out:
a batch read from the old broker may commit just after the new one started.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Sequence

from shared.events.topics import DEAD_LETTERS
from soak.evidence import Evidence
from soak.observers import Epoch, Observed, PositionSample

EPOCH_GRACE_SECONDS = 3.0


def _epoch_of(moment: float, epochs: Sequence[Epoch]) -> int | None:
    for number, epoch in enumerate(epochs):
        stop = epoch.stopped_at if epoch.stopped_at is not None else float("inf")
        if epoch.started_at + EPOCH_GRACE_SECONDS <= moment < stop:
            return number
    return None  # around a broker restart: which log the position counts in is unclear


def skipped_records(observed: Observed, evidence: Evidence) -> tuple[list[str], list[str]]:
    """Records a consumer stepped over: never recorded, and recorded only later."""
    never: list[str] = []
    later: list[str] = []
    # per (epoch, topic, partition): positions in time order, and the furthest one so far
    timelines: dict[tuple[int, str, int], list[PositionSample]] = defaultdict(list)
    for sample in observed.positions:
        epoch = _epoch_of(sample.updated_at, observed.epochs)
        if epoch is not None:
            timelines[(epoch, sample.topic, sample.partition)].append(sample)
    reach: dict[tuple[int, str, int], tuple[list[int], list[float]]] = {}
    for key, samples in timelines.items():
        samples.sort(key=lambda s: s.updated_at)
        furthest, offsets = 0, []
        for sample in samples:
            furthest = max(furthest, sample.next_offset)
            offsets.append(furthest)
        reach[key] = (offsets, [s.updated_at for s in samples])
    for record in observed.records:
        found = reach.get((record.epoch, record.topic, record.partition))
        if found is None:
            continue
        offsets, times = found
        first = bisect.bisect_right(offsets, record.offset)
        if first == len(offsets):
            continue  # no recorded position has passed this record
        passed_at = times[first]
        where = f"{record.topic}[{record.partition}]@{record.offset} (broker epoch {record.epoch})"
        if record.topic == DEAD_LETTERS:
            stored_at = evidence.rejected.get(record.raw_sha256)
        else:
            stored_at = evidence.event_times.get(record.event_id or "")
            if stored_at is None and record.raw_sha256 in evidence.rejected:
                continue  # not a valid event: the consumer dead-lettered it, as it should
        if stored_at is None:
            never.append(f"{where}: never recorded")
        elif stored_at > passed_at + 0.001:
            late = stored_at - passed_at
            later.append(f"{where}: recorded {late:.1f}s after passed")
    return never, later
