"""The rules engine: what the facts say now, compared with what Vigil has already said (pure).

For each rule, the points of clinical time where it was judged (``conditions/``) make
episodes: an episode opens at the first point where the condition holds and resolves at the
first later point where it does not. The engine then reconciles those episodes with the ones
the signal events recorded, and returns only the difference as new events:

- an episode nobody has recorded is *raised*;
- a recorded episode whose worst grade got worse is *escalated*;
- one that went back in range is *resolved*, and *reopened* when what resolved it is
  withdrawn;
- one whose source facts were corrected is *amended*, or *retracted* when the corrected
  facts no longer meet the rule (or when it merged into an earlier episode).

Because the comparison is by clinical time and against the whole history, a late result is
judged where it belongs, a redelivered batch says nothing new, and a restart loses nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from services.safety_rules.domain.conditions import Point, Problem, entrywise, judge
from services.safety_rules.domain.episodes import Evaluation
from services.safety_rules.domain.history import LabEntry, SubjectHistory
from services.safety_rules.domain.incremental import (
    fold,
    new_entries,
    on_or_before_day0,
    tail_of_walk,
    usable_tail,
)
from services.safety_rules.domain.reconcile import reconcile
from services.safety_rules.domain.rule_kinds import Rule
from services.safety_rules.domain.rule_pack import RulePack
from services.safety_rules.domain.unreadable import unreadable_problem
from shared.events import DataQualityIssueRaised, SafetySignalRouted

ENROLMENT = "enrolment"


def rules_touched(
    pack: RulePack, inputs: set[str] | None, history: SubjectHistory | None = None
) -> list[Rule]:
    """The rules that read any of ``inputs`` (LOINC codes, 'adverse-event', 'medication';
    None or 'enrolment': all rules), and the rules with an episode open on ``history``'s
    record: time has moved on with any new fact, and a moment that had not come when the
    episode was last judged (a single dose's day, a planned stop) may have come now."""
    if inputs is None or ENROLMENT in inputs:
        return list(pack.rules)
    rules = pack.rules_reading(inputs)
    if history is None:
        return rules
    chosen = {rule.id for rule in rules}
    return rules + [
        rule for rule in pack.rules if rule.id not in chosen and history.has_open_episode(rule.id)
    ]


def known_by_now(points: Sequence[Point], history: SubjectHistory) -> list[Point]:
    """The points that are true as of the latest time Vigil learned anything of the
    subject. A point where the condition stops holding at a later moment (a single dose
    counts for its day, a medication's planned stop next week, an adverse event's end date
    ahead) has not come yet: it neither resolves nor splits an episode until a fact
    recorded after it makes the rules walk again. A point where the condition holds is
    kept whenever it lies: a collection time may run ahead of Vigil's clock within
    ingest's allowed skew, and a prohibited drug booked for next week is worth telling
    now; never silencing a finding is the safer error."""
    now = history.learned_until
    if now is None:
        return list(points)
    return [point for point in points if point.holds or point.at <= now]


def evaluate(
    history: SubjectHistory,
    pack: RulePack,
    inputs: set[str] | None = None,
    new_facts: set[uuid.UUID] | None = None,
) -> Evaluation:
    """The events that bring the record in line with what ``history`` now says.

    ``new_facts``, when given, are the only facts that changed since the record was last
    brought in line (no correction, no enrolment): a rule whose new points are all in range,
    later than its earlier ones, with no episode open, then has nothing to say, and is not
    walked again over the whole history (the common case: a normal result). New points
    later than every earlier one are folded into the end of the record the rule's last walk
    left (``incremental``): the same events as a whole walk, at a cost that does not grow
    with the history. Anything else (a late result, a correction, a new baseline, a rule
    that needs a window or reads adverse events) walks the whole history.
    """
    evaluation = Evaluation()
    enrolled = history.enrolment is not None
    _route_to_site(history, pack, evaluation)
    problems: list[Problem] = []
    for rule in rules_touched(pack, inputs, history):
        if rule.needs_enrolment and not enrolled:
            continue
        if new_facts is not None and entrywise(rule, history, new_facts):
            fresh, found = judge(rule, history, only=new_facts)
            known = known_by_now(fresh, history)
            entries = new_entries(rule, history, new_facts)
            tail = usable_tail(rule, pack, history, entries, fresh, known)
            if tail is not None:
                problems += found
                fold(rule, pack, history, tail, entries, known, evaluation)
                continue
            if _nothing_to_say(rule, history, known, entries, new_facts):
                history.tails.pop(rule.id, None)
                problems += found
                continue
        points, found = judge(rule, history)
        evaluation.walked.append(rule.id)
        problems += found
        known = known_by_now(points, history)
        before = len(evaluation.events)
        walked = reconcile(rule, pack, history, known, evaluation)
        tail_of_walk(rule, pack, history, points, known, walked, evaluation, before)
    problems += [
        unreadable_problem(event_id, result)
        for event_id, result in history.unreadable.items()
        if not _raised_for(history, event_id)
    ]
    # one issue per result set aside, not one per rule that would have read it
    problems += [
        Problem(aside.issue, aside.detail, event_id, "")
        for event_id, aside in history.set_aside.items()
    ]
    if not enrolled and history.first_fact_id is not None:
        problems.append(
            Problem(
                "unknown-subject",
                f"subject {history.subject_id} of study {history.study_id} is not enrolled in "
                "Vigil: rules that need only the result were applied, rules that need age, "
                "sex, weight or Day 0 were not; signals go to the study's medical monitor",
                history.first_fact_id,
                "",
            )
        )
    seen: set[tuple[str, uuid.UUID]] = set()  # besides those on record (not copied)
    for problem in problems:
        key = (problem.issue, problem.related_event_id)
        if key in seen or key in history.data_quality:
            continue
        seen.add(key)
        evaluation.add(
            DataQualityIssueRaised(
                study_id=history.study_id,
                subject_id=history.subject_id,
                issue=problem.issue,
                detail=problem.detail,
                related_event_id=problem.related_event_id,
                rule_id=problem.rule_id or None,
            ),
            problem.related_event_id,
        )
    return evaluation


def _route_to_site(history: SubjectHistory, pack: RulePack, evaluation: Evaluation) -> None:
    """Each open signal whose recorded site is not the subject's (raised before the
    subject was known, or the subject moved) is routed to the subject's site, so that its
    investigators learn of it: before any other event of this evaluation, so that what
    becomes of the signal next reaches them too. The routed event folds back into the
    episode, so a redelivery or a later batch routes nothing twice."""
    site_id = history.site_id
    if site_id is None or history.enrolment_fact is None:
        return
    for episode in sorted(history.open_episodes.values(), key=lambda e: e.order):
        if episode.site_id == site_id:
            continue
        evaluation.add(
            SafetySignalRouted(
                study_id=history.study_id,
                subject_id=history.subject_id,
                signal_id=episode.signal_id,
                rule_id=episode.rule_id,
                rule_pack_version=pack.version,
                site_id=site_id,
                previous_site_id=episode.site_id,
                enrolment_event_id=history.enrolment_fact.event_id,
            ),
            history.enrolment_fact.event_id,
        )


def _raised_for(history: SubjectHistory, event_id: uuid.UUID) -> bool:
    return any(
        (issue, event_id) in history.data_quality
        for issue in ("result-unreadable", "abnormal-result-unreadable")
    )


def _nothing_to_say(
    rule: Rule,
    history: SubjectHistory,
    fresh: Sequence[Point],
    new: Sequence[LabEntry],
    new_facts: set[uuid.UUID],
) -> bool:
    """Whether the new results (``new``, whose points known by now are ``fresh``) leave
    the rule's record as it is: none holds, no episode is open, and each is later than
    every earlier result and after Day 0. Judged by the results, not only their points: a
    result on or before Day 0 has no point of its own, yet may be a new baseline that
    every later judgement reads."""
    if any(point.holds for point in fresh):
        return False
    if history.has_open_episode(rule.id):
        return False  # a normal result may resolve it
    if on_or_before_day0(history, new):
        return False  # it may be a new baseline, which earlier judgements read
    # the latest earlier result: from the end of the time-ordered list, past the new ones
    entries = history.results(*rule.inputs())
    latest = next((e.at for e in reversed(entries) if e.event_id not in new_facts), None)
    return latest is None or (
        all(point.at >= latest for point in fresh) and all(entry.at >= latest for entry in new)
    )
