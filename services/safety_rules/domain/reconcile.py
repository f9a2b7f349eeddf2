"""Reconciliation: episodes the facts show against episodes the signal events recorded (pure).

Only the difference becomes new events: raised, escalated, resolved, reopened, amended or
retracted (see ``engine.py``).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.safety_rules.domain.conditions import Point
from services.safety_rules.domain.episodes import Episode, Evaluation, episodes_of, signal_id_for
from services.safety_rules.domain.history import RecordedEpisode, SubjectHistory
from services.safety_rules.domain.rule_kinds import Rule
from services.safety_rules.domain.rule_pack import RulePack
from shared.events import (
    SafetySignalAmended,
    SafetySignalEscalated,
    SafetySignalRaised,
    SafetySignalReopened,
    SafetySignalResolved,
    SafetySignalRetracted,
)


def _overlaps(recorded: RecordedEpisode, episode: Episode) -> bool:
    if recorded.episode_key is not None:
        return True  # an AE's episodes are about that AE, whenever its dates moved
    recorded_end = recorded.resolved_at or datetime.max.replace(tzinfo=recorded.opened_at.tzinfo)
    episode_end = episode.end or datetime.max.replace(tzinfo=episode.start.tzinfo)
    return recorded.opened_at < episode_end and episode.start < recorded_end


class UsedSignalIds:
    """The signal ids on the subject's record and those this evaluation gave: a new
    episode's id must be none of them. Reads the record's ids in place (no copy of them
    all per rule and per batch)."""

    def __init__(self, history: SubjectHistory) -> None:
        self._recorded = history.episodes
        self._given: set[uuid.UUID] = set()

    def __contains__(self, signal_id: object) -> bool:
        return signal_id in self._given or signal_id in self._recorded

    def add(self, signal_id: uuid.UUID) -> None:
        self._given.add(signal_id)


@dataclass
class Followed:
    """One derived episode as the reconciler followed it: the recorded episode it stands
    for (found or raised now) and how many events it took."""

    episode: Episode
    signal_id: uuid.UUID
    events: int


@dataclass
class Walked:
    """What a whole walk of one rule found, for ``incremental``: each derived episode as
    followed (one episode key at a time, keys in order), and how many recorded episodes no
    derived one stood for."""

    keys: list[str | None] = dataclasses.field(default_factory=list)
    followed: list[Followed] = dataclasses.field(default_factory=list)
    unmatched: int = 0


def reconcile(
    rule: Rule,
    pack: RulePack,
    history: SubjectHistory,
    points: Sequence[Point],
    evaluation: Evaluation,
) -> Walked:
    """Add to ``evaluation`` the events that bring ``rule``'s recorded episodes in line with
    the episodes ``points`` now make, one episode key at a time."""
    by_key: dict[str | None, list[Point]] = {}
    for point in points:
        by_key.setdefault(point.episode_key, []).append(point)
    # the engine works on copies: the history changes only by the events it reads back
    mine = [
        dataclasses.replace(e, inputs=set(e.inputs), resolved_inputs=set(e.resolved_inputs))
        for e in history.episodes.values()
        if e.rule_id == rule.id and e.status != "retracted"
    ]
    used = UsedSignalIds(history)
    walked = Walked()
    for key in sorted(set(by_key) | {e.episode_key for e in mine}, key=lambda k: k or ""):
        recorded = sorted((e for e in mine if e.episode_key == key), key=lambda e: e.order)
        group = by_key.get(key, [])
        reconciler = _Reconciler(rule, pack, history, evaluation, used)
        walked.keys.append(key)
        reconciler.run(recorded, episodes_of(group), group, walked)
    return walked


def reconcile_tail(
    rule: Rule,
    pack: RulePack,
    history: SubjectHistory,
    recorded: RecordedEpisode | None,
    derived: list[Episode],
    used: UsedSignalIds,
    evaluation: Evaluation,
) -> Walked:
    """Reconcile only the end of a rule's record: ``recorded`` (the episode open on the
    record, which the first of ``derived`` continues) and the episodes after it, which
    no recorded episode stands for. What a whole walk does there when every earlier
    episode is in line (see ``incremental``)."""
    mine = (
        []
        if recorded is None
        else [
            dataclasses.replace(
                recorded,
                inputs=set(recorded.inputs),
                resolved_inputs=set(recorded.resolved_inputs),
            )
        ]
    )
    walked = Walked(keys=[None])
    _Reconciler(rule, pack, history, evaluation, used).run(mine, derived, [], walked)
    return walked


@dataclass
class _Reconciler:
    rule: Rule
    pack: RulePack
    history: SubjectHistory
    evaluation: Evaluation
    used_ids: UsedSignalIds

    def run(
        self,
        recorded: list[RecordedEpisode],
        derived: list[Episode],
        group: list[Point],
        walked: Walked,
    ) -> None:
        pairs: dict[uuid.UUID, Episode] = {}
        for episode in derived:
            before = len(self.evaluation.events)
            candidate = next(
                (r for r in recorded if r.signal_id not in pairs and _overlaps(r, episode)), None
            )
            if candidate is None:
                signal_id = self._raise(episode)
            else:
                pairs[candidate.signal_id] = episode
                self._follow(candidate, episode)
                signal_id = candidate.signal_id
            walked.followed.append(
                Followed(episode, signal_id, len(self.evaluation.events) - before)
            )
        for record in recorded:
            if record.signal_id in pairs:
                continue
            walked.unmatched += 1
            self._unmatched(record, pairs, recorded, group)

    # -- an episode the facts show ------------------------------------------------------

    def _base(self, signal_id: uuid.UUID) -> dict[str, object]:
        return {
            "study_id": self.history.study_id,
            "subject_id": self.history.subject_id,
            "signal_id": signal_id,
            "rule_id": self.rule.id,
            "rule_pack_version": self.pack.version,
            "site_id": self.history.site_id,
        }

    def _deadline(self, point: Point) -> datetime | None:
        hours = self.rule.reporting_deadline_hours
        if hours is None or point.learned_at is None:
            return None
        return point.learned_at + timedelta(hours=hours)

    def _new_signal_id(self, episode: Episode) -> uuid.UUID:
        opening = episode.opening
        signal_id = signal_id_for(self.rule.id, opening.input_ids[0], opening.episode_key)
        generation = 1
        while signal_id in self.used_ids:
            generation += 1
            signal_id = uuid.uuid5(signal_id, str(generation))
        self.used_ids.add(signal_id)
        return signal_id

    def _raise(self, episode: Episode) -> uuid.UUID:
        opening, rule = episode.opening, self.rule
        signal_id = self._new_signal_id(episode)
        raised = SafetySignalRaised(
            **self._base(signal_id),
            rule_title=rule.title,
            input_event_ids=opening.input_ids,
            computed_values=dict(opening.computed),
            analyte=opening.analyte,
            observed_value=opening.observed_value,
            observed_unit=opening.observed_unit,
            observed_comparator=opening.observed_comparator,
            threshold=rule.describe(),
            collected_at=opening.at,
            severity=rule.severity,
            grade=opening.grade,
            grading=rule.grading.label if rule.grading else None,
            serious=opening.serious,
            required_action=rule.required_action,
            reporting_deadline=self._deadline(opening),
            recipient_roles=rule.recipients,
            rule_source=rule.source,
            episode_key=opening.episode_key,
            subject_enrolled=self.history.enrolment is not None,
        )
        self.evaluation.add(raised, opening.input_ids[0])
        record = RecordedEpisode(
            signal_id,
            rule.id,
            opening.episode_key,
            -1,
            opening.at,
            opening.grade,
            set(opening.input_ids),
        )
        self._follow(record, episode)
        return signal_id

    def _follow(self, record: RecordedEpisode, episode: Episode) -> None:
        worst = episode.worst
        gone = {i for i in record.inputs if not self.history.is_current(i)}
        if gone:
            self._amend(record, episode, gone)
        elif (worst.grade or 0) > (record.grade or 0):
            self.evaluation.add(
                SafetySignalEscalated(
                    **self._base(record.signal_id),
                    previous_grade=record.grade,
                    grade=worst.grade,
                    input_event_ids=worst.input_ids,
                    computed_values=dict(worst.computed),
                    observed_value=worst.observed_value,
                    observed_unit=worst.observed_unit,
                    observed_comparator=worst.observed_comparator,
                    collected_at=worst.at,
                    reporting_deadline=self._deadline(worst),
                ),
                worst.input_ids[0],
            )
            record.grade = worst.grade
            record.inputs |= set(worst.input_ids)
        self._follow_status(record, episode)

    def _amend(self, record: RecordedEpisode, episode: Episode, gone: set[uuid.UUID]) -> None:
        opening, worst = episode.opening, episode.worst
        inputs = tuple(dict.fromkeys((*opening.input_ids, *worst.input_ids)))
        computed = dict(opening.computed)
        if worst is not opening:
            computed["worst"] = worst.summary
        self.evaluation.add(
            SafetySignalAmended(
                **self._base(record.signal_id),
                reason=f"{len(gone)} source fact(s) were corrected or replaced; the signal "
                f"stands on the current facts ({opening.summary})",
                previous_grade=record.grade,
                grade=worst.grade,
                input_event_ids=inputs,
                superseded_event_ids=tuple(sorted(gone)),
                computed_values=computed,
                observed_value=opening.observed_value,
                observed_unit=opening.observed_unit,
                observed_comparator=opening.observed_comparator,
                collected_at=opening.at,
            ),
            opening.input_ids[0],
        )
        record.grade, record.inputs, record.opened_at = worst.grade, set(inputs), opening.at

    def _follow_status(self, record: RecordedEpisode, episode: Episode) -> None:
        resolution = episode.resolution
        if resolution is not None and (
            record.status == "open"
            or any(not self.history.is_current(i) for i in record.resolved_inputs)
        ):
            self._resolve(record, resolution)
        elif resolution is None and record.status == "resolved" and not self._ahead(record):
            gone = tuple(
                sorted(i for i in record.resolved_inputs if not self.history.is_current(i))
            )
            self.evaluation.add(
                SafetySignalReopened(
                    **self._base(record.signal_id),
                    reason="what resolved the signal was corrected or withdrawn; the "
                    "condition holds again on the current facts",
                    superseded_event_ids=gone,
                ),
                gone[0] if gone else None,
            )
            record.status, record.resolved_at, record.resolved_inputs = "open", None, set()

    def _ahead(self, record: RecordedEpisode) -> bool:
        """Whether the record's resolution is at a moment that has not come yet (resolved
        ahead of time before the rules waited for it): the facts have not contradicted it,
        so nothing reopens until a walk after that moment."""
        now = self.history.learned_until
        return record.resolved_at is not None and now is not None and record.resolved_at > now

    def _resolve(self, record: RecordedEpisode, point: Point) -> None:
        self.evaluation.add(
            SafetySignalResolved(
                **self._base(record.signal_id),
                reason=f"{point.summary}: the condition ({self.rule.describe()}) no longer holds",
                input_event_ids=point.input_ids,
                collected_at=point.at,
            ),
            point.input_ids[0],
        )
        record.status, record.resolved_at = "resolved", point.at
        record.resolved_inputs = set(point.input_ids)

    # -- an episode the facts no longer show ----------------------------------------------

    def _unmatched(
        self,
        record: RecordedEpisode,
        pairs: dict[uuid.UUID, Episode],
        recorded: list[RecordedEpisode],
        group: list[Point],
    ) -> None:
        into = next(
            (
                other
                for other in recorded
                if other.signal_id in pairs and _overlaps(record, pairs[other.signal_id])
            ),
            None,
        )
        gone = tuple(sorted(i for i in record.inputs if not self.history.is_current(i)))
        if into is not None:
            self._retract(
                record,
                "it is the same episode as an earlier signal, now that the "
                "facts between them were corrected",
                gone,
                into.signal_id,
            )
        elif gone:
            self._retract(
                record,
                "the facts it was raised on were corrected or withdrawn, and "
                "the current facts do not meet the rule",
                gone,
                None,
            )
        elif record.status == "open":
            # raised under an earlier pack whose condition this one no longer shares: it stays
            # on record and resolves at the first later point that is in range
            later = [p for p in group if not p.holds and p.at > record.opened_at]
            if later:
                self._resolve(record, min(later, key=lambda p: p.sort_key))

    def _retract(
        self,
        record: RecordedEpisode,
        reason: str,
        gone: tuple[uuid.UUID, ...],
        merged_into: uuid.UUID | None,
    ) -> None:
        self.evaluation.add(
            SafetySignalRetracted(
                **self._base(record.signal_id),
                reason=reason,
                superseded_event_ids=gone,
                merged_into=merged_into,
            ),
            gone[0] if gone else None,
        )
        record.status = "retracted"
