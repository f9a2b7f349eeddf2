"""Folding a rule's new in-order points into the end of its record (pure).

A whole walk (``engine.evaluate``) judges every point of a rule again (memoised, but looked
up) and reconciles every episode from the first, so its cost grows with the subject's
history. Most new results come after every earlier result of their analytes; then the
earlier points do not move, the episodes before the last one are as they were, and the
whole walk would find them in line with the record and say nothing of them. This module
keeps, per rule, what the last walk left at the end (a :class:`RuleTail`: the last derived
episode when it is open, and the recorded episode that stands for it) and folds the new
points into it, reconciling only the end: the same events, at a cost that does not grow
with the history.

A tail is kept only when a whole walk shows the record in line before the last episode
(every recorded episode stood for by a derived one, no event about any earlier episode,
every point known by now, no episode key), and it is used only while nothing else has
moved: the same rule pack, the rule's results exactly those it saw plus the new ones, all
of them later than every earlier one and after Day 0 (a new baseline re-judges earlier
results), each one known by now, and no lifecycle event of the rule folded in besides the
ones it expects. Otherwise the rule walks the whole history, as before, and a new tail is
taken from that walk. The rules that need a window (Hy's law), or read adverse events or
medications, always walk.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from services.safety_rules.domain.conditions import Point
from services.safety_rules.domain.episodes import Episode, Evaluation, episodes_of
from services.safety_rules.domain.history import LabEntry, SubjectHistory
from services.safety_rules.domain.reconcile import UsedSignalIds, Walked, reconcile_tail
from services.safety_rules.domain.rule_kinds import (
    AbsoluteThresholdRule,
    BaselineChangeRule,
    CodedResultRule,
    CreatinineClearanceRule,
    QualitativeRule,
    ReferenceLimitRule,
    Rule,
)
from services.safety_rules.domain.rule_pack import RulePack
from shared.events import (
    SafetySignalAmended,
    SafetySignalEscalated,
    SafetySignalRaised,
    SafetySignalReopened,
    SafetySignalResolved,
    SafetySignalRetracted,
)

#: kinds whose points are one per entry and depend on that entry (and the baseline) alone
FOLDABLE: tuple[type, ...] = (
    AbsoluteThresholdRule,
    ReferenceLimitRule,
    BaselineChangeRule,
    QualitativeRule,
    CodedResultRule,
    CreatinineClearanceRule,
)

_LIFECYCLE = (
    SafetySignalRaised,
    SafetySignalEscalated,
    SafetySignalAmended,
    SafetySignalResolved,
    SafetySignalReopened,
    SafetySignalRetracted,
)


@dataclass(frozen=True)
class OpenEpisode:
    """The last derived episode while it is open: its first point, its worst (the earliest
    of the highest grade), and the recorded episode that stands for it."""

    opening: Point
    worst: Point
    signal_id: uuid.UUID

    def episode(self) -> Episode:
        points = (self.opening,) if self.worst is self.opening else (self.opening, self.worst)
        return Episode(points, None)


@dataclass(frozen=True)
class RuleTail:
    """What a rule's last walk (whole or folded) left for the next in-order points."""

    pack_version: str
    #: how many current results of the rule's inputs it saw
    count: int
    #: the latest collection time among them (None: none)
    last_at: datetime | None
    #: how many lifecycle events of the rule the record holds once this walk's are folded
    lifecycle_events: int
    open: OpenEpisode | None


def new_entries(rule: Rule, history: SubjectHistory, new_facts: set[uuid.UUID]) -> list[LabEntry]:
    """The current results among ``new_facts`` that the rule reads."""
    codes = set(rule.inputs())
    return [
        entry
        for event_id in new_facts
        if (entry := history.labs.get(event_id)) is not None and entry.result.loinc_code in codes
    ]


def usable_tail(
    rule: Rule,
    pack: RulePack,
    history: SubjectHistory,
    entries: Sequence[LabEntry],
    fresh: Sequence[Point],
    known: Sequence[Point],
) -> RuleTail | None:
    """The rule's tail when the new points (``fresh``, of the new ``entries``; ``known``:
    those known by now) may be folded into it, else None (walk the whole history)."""
    tail: RuleTail | None = history.tails.get(rule.id)
    if tail is None or tail.pack_version != pack.version:
        return None
    if len(history.results(*rule.inputs())) != tail.count + len(entries):
        return None  # a result came or went that the tail did not see
    if history.lifecycle_events.get(rule.id, 0) != tail.lifecycle_events:
        return None  # the record moved otherwise than by the tail's own events
    if len(known) != len(fresh) or any(point.episode_key is not None for point in fresh):
        return None
    if tail.last_at is not None and (
        any(entry.at <= tail.last_at for entry in entries)
        or any(point.at <= tail.last_at for point in fresh)
    ):
        return None  # a late result (or one at the same moment) may move an earlier episode
    if on_or_before_day0(history, entries):
        return None  # it may be a new baseline, which earlier judgements read
    if tail.open is None:
        return tail if not history.has_open_episode(rule.id) else None
    recorded = history.episodes.get(tail.open.signal_id)
    if (
        recorded is None
        or recorded.status != "open"
        or recorded.opened_at != tail.open.opening.at
        or history.open_count(rule.id) != 1
    ):
        return None
    return tail


def on_or_before_day0(history: SubjectHistory, entries: Sequence[LabEntry]) -> bool:
    """Whether any of these results was collected on or before the subject's Day 0: it may
    be a new baseline, which every later judgement reads."""
    day0 = history.day0
    return day0 is not None and any(entry.at.date() <= day0 for entry in entries)


def fold(
    rule: Rule,
    pack: RulePack,
    history: SubjectHistory,
    tail: RuleTail,
    entries: Sequence[LabEntry],
    points: Sequence[Point],
    evaluation: Evaluation,
) -> None:
    """Add to ``evaluation`` what a whole walk would: the new points (all later than every
    earlier one) continue the open episode or make new ones, and only those are reconciled
    with the record. Leaves the rule's next tail."""
    # the open episode stands for itself by its opening and worst points: every new point
    # is later than both, so the grouping is what a whole walk makes of this stretch
    standing = tail.open.episode().points if tail.open else ()
    derived = episodes_of([*standing, *points])
    recorded = history.episodes[tail.open.signal_id] if tail.open else None
    walked = Walked()
    if derived:
        # the open episode (opened where the record says) is continued by the first
        # derived one, which overlaps it: every recorded episode is stood for
        walked = reconcile_tail(
            rule, pack, history, recorded, derived, UsedSignalIds(history), evaluation
        )
    last_open = None
    if derived and derived[-1].resolution is None:
        follow = walked.followed[-1]
        last_open = OpenEpisode(derived[-1].opening, derived[-1].worst, follow.signal_id)
    latest = max((entry.at for entry in entries), default=tail.last_at)
    history.tails[rule.id] = RuleTail(
        pack.version,
        tail.count + len(entries),
        latest,
        tail.lifecycle_events + sum(f.events for f in walked.followed),
        last_open,
    )


def tail_of_walk(
    rule: Rule,
    pack: RulePack,
    history: SubjectHistory,
    points: Sequence[Point],
    known: Sequence[Point],
    walked: Walked,
    evaluation: Evaluation,
    events_before: int,
) -> None:
    """Keep the rule's tail after a whole walk when the walk shows the record in line
    before its last episode; else drop it (the next batch walks again)."""
    history.tails.pop(rule.id, None)
    if not isinstance(rule, FOLDABLE) or len(known) != len(points):
        return
    if walked.unmatched or walked.keys not in ([], [None]):
        return
    if any(f.events for f in walked.followed[:-1]):
        return  # an earlier episode moved: the next walk shows whether it is in line now
    emitted = evaluation.events[events_before:]
    lifecycle = sum(1 for event in emitted if isinstance(event, _LIFECYCLE))
    if lifecycle != len(emitted) or lifecycle != sum(f.events for f in walked.followed):
        return
    entries = history.results(*rule.inputs())
    last_at = max(
        [*(e.at for e in entries[-1:]), *(p.at for p in points)],
        default=None,
    )
    last_open = None
    if walked.followed and walked.followed[-1].episode.resolution is None:
        last = walked.followed[-1]
        last_open = OpenEpisode(last.episode.opening, last.episode.worst, last.signal_id)
    history.tails[rule.id] = RuleTail(
        pack.version,
        len(entries),
        last_at,
        history.lifecycle_events.get(rule.id, 0) + lifecycle,
        last_open,
    )
