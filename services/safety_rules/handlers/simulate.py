"""``vigil rules simulate``: what a candidate rule pack would say over the stored history.

Every subject's facts are replayed from the audit log through the current pack and the
candidate, each on a clean record; nothing is written or published. The difference is the
review material for a protocol amendment: the signals that would appear, disappear, or be
graded differently.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.safety_rules.domain.engine import evaluate
from services.safety_rules.domain.history import SubjectHistory
from services.safety_rules.domain.rule_pack import RulePack
from shared.events import SafetySignalEscalated, SafetySignalRaised, SignalEvent
from shared.eventstore import EventStore

# the facts a pack judges; earlier signals and data-quality flags are left out, so that
# each pack starts from a clean record
FACT_TYPES = (
    "org.vigil.subject.enrolled.v1",
    "org.vigil.lab_result.reported.v1",
    "org.vigil.lab_result.superseded.v1",
    "org.vigil.lab_result.unreadable.v1",
    "org.vigil.adverse_event.reported.v1",
    "org.vigil.medication.recorded.v1",
)


@dataclass(frozen=True)
class StoredFact:
    subject_id: str
    event_id: uuid.UUID
    type: str
    payload: dict[str, Any]
    recorded_at: datetime
    version: int


@dataclass(frozen=True)
class Finding:
    """One episode a pack finds: its rule, subject, opening fact and worst grade."""

    subject_id: str
    rule_id: str
    episode_key: str | None
    opened_by: uuid.UUID
    collected_at: datetime
    summary: str
    grade: int | None

    @property
    def key(self) -> tuple[str, str, str | None, uuid.UUID]:
        return (self.subject_id, self.rule_id, self.episode_key, self.opened_by)


@dataclass
class Simulation:
    study_id: str
    current_version: str
    candidate_version: str
    subjects: int = 0
    appear: list[Finding] = field(default_factory=list)
    disappear: list[Finding] = field(default_factory=list)
    regraded: list[tuple[Finding, Finding]] = field(default_factory=list)
    unchanged: int = 0


def findings(
    study_id: str, facts: Iterable[StoredFact], pack: RulePack
) -> dict[tuple[str, str, str | None, uuid.UUID], Finding]:
    """Every episode ``pack`` finds in the facts, on a clean record."""
    histories: dict[str, SubjectHistory] = {}
    for item in facts:
        history = histories.setdefault(item.subject_id, SubjectHistory(study_id, item.subject_id))
        history.apply(item.type, item.payload, item.event_id, item.recorded_at, item.version)
    found: dict[tuple[str, str, str | None, uuid.UUID], Finding] = {}
    for subject_id, history in histories.items():
        raised: dict[uuid.UUID, Finding] = {}
        for event in evaluate(history, pack).events:
            if isinstance(event, SafetySignalRaised):
                raised[event.signal_id] = Finding(
                    subject_id,
                    event.rule_id,
                    event.episode_key,
                    event.input_event_ids[0],
                    event.collected_at,
                    _summary(event),
                    event.grade,
                )
            elif isinstance(event, SafetySignalEscalated) and event.signal_id in raised:
                before = raised[event.signal_id]
                raised[event.signal_id] = Finding(**{**before.__dict__, "grade": event.grade})
            elif isinstance(event, SignalEvent):
                continue
        for finding in raised.values():
            found[finding.key] = finding
    return found


def _summary(event: SafetySignalRaised) -> str:
    value = (
        f"{event.observed_comparator or ''} {event.observed_value:f} "
        f"{event.observed_unit or ''}".strip()
        if event.observed_value is not None
        else ""
    )
    return f"{event.analyte} {value}".strip()


def compare(
    study_id: str, facts: Sequence[StoredFact], current: RulePack, candidate: RulePack
) -> Simulation:
    """The signals the candidate would add, remove or grade differently."""
    before = findings(study_id, facts, current)
    after = findings(study_id, facts, candidate)
    result = Simulation(study_id, current.version, candidate.version)
    result.subjects = len({f.subject_id for f in facts})
    for key, finding in sorted(after.items(), key=lambda kv: (kv[0][0], kv[1].collected_at)):
        if key not in before:
            result.appear.append(finding)
        elif before[key].grade != finding.grade:
            result.regraded.append((before[key], finding))
        else:
            result.unchanged += 1
    result.disappear = sorted(
        (f for key, f in before.items() if key not in after),
        key=lambda f: (f.subject_id, f.collected_at),
    )
    return result


async def load_facts(store: EventStore, study_id: str) -> list[StoredFact]:
    """The study's facts from the audit log, subject by subject in stream order."""
    events = await store.read_study_subject_events(study_id, FACT_TYPES)
    return [
        # a subject stream's events always name their subject
        StoredFact(
            e.subject_id or "", e.event_id, e.type, e.payload, e.recorded_at, e.stream_version
        )
        for e in events
    ]


def report(simulation: Simulation) -> str:
    """The comparison as a review table."""
    lines = [
        f"Study {simulation.study_id}: {simulation.subjects} subject(s); current pack "
        f"{simulation.current_version} -> candidate {simulation.candidate_version}",
        f"  would appear: {len(simulation.appear)}, would disappear: "
        f"{len(simulation.disappear)}, graded differently: {len(simulation.regraded)}, "
        f"unchanged: {simulation.unchanged}",
    ]

    def row(mark: str, finding: Finding, grade: str) -> str:
        return (
            f"  {mark} {finding.subject_id:<12} {finding.rule_id:<36} "
            f"{finding.collected_at.isoformat():<26} {grade:<9} {finding.summary}"
        )

    def grade_of(finding: Finding) -> str:
        return f"grade {finding.grade}" if finding.grade else "-"

    if simulation.appear or simulation.disappear or simulation.regraded:
        lines += [
            "",
            f"  {'':1} {'subject':<12} {'rule':<36} {'clinical time':<26} {'grade':<9} finding",
        ]
    lines += [row("+", f, grade_of(f)) for f in simulation.appear]
    lines += [row("-", f, grade_of(f)) for f in simulation.disappear]
    lines += [
        row("~", new, f"{grade_of(old)} -> {new.grade or '-'}") for old, new in simulation.regraded
    ]
    return "\n".join(lines)
