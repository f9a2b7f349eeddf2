"""What the rules service does with one batch of consumed records."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from services.safety_rules.domain.engine import ENROLMENT, evaluate
from services.safety_rules.domain.event_source import SOURCE
from services.safety_rules.domain.history import SubjectHistory
from services.safety_rules.domain.rule_pack import RulePack
from services.safety_rules.handlers.ports import RulesUnitOfWork
from services.safety_rules.handlers.supersede_links import supersedes
from shared.events import (
    AdverseEventReported,
    Envelope,
    EventPayload,
    LabResultReported,
    LabResultUnreadable,
    MedicationRecorded,
    SafetySignalRaised,
    SignalEvent,
    SubjectEnrolled,
    SubjectEvent,
    subject_stream,
    wrap,
)
from shared.events.topics import DATA_QUALITY, SAFETY_SIGNALS

log = structlog.get_logger(__name__)


@dataclass
class BatchOutcome:
    """What one batch did, for logs, metrics and tests."""

    stored: int = 0
    duplicates: int = 0
    signals: list[Envelope] = field(default_factory=list)
    data_quality: list[Envelope] = field(default_factory=list)
    #: rules that walked a subject's whole history, once per walk (cost grows with history)
    walked: list[str] = field(default_factory=list)

    @property
    def published(self) -> int:
        return len(self.signals) + len(self.data_quality)


def _processing_order(envelope: Envelope) -> int:
    # enrolments first, so a result in the same batch finds its subject
    return 0 if envelope.type == SubjectEnrolled.event_type else 1


async def handle_batch(
    envelopes: Sequence[Envelope],
    uow: RulesUnitOfWork,
    packs: Mapping[str, RulePack],
    *,
    incremental: bool = True,
) -> BatchOutcome:
    """Store the batch, and bring each touched subject's signals in line with its facts.

    The rules judge first, on each touched subject's stored history with the batch's new
    facts folded in where the log will put them; then facts, supersede links and signal
    events are appended together, on condition that no subject's stream moved meanwhile
    (another instance taking over its partition). Only subjects with facts that were not
    stored before are judged, and the engine compares with what is already recorded, so a
    redelivered batch says nothing new.

    ``incremental=False`` (``VIGIL_RULES_INCREMENTAL=false``) makes every rule a new fact
    touches walk the subject's whole history (none looks at the new facts alone): slower as
    histories grow, the same events; the way to rule the fold out when a finding is in
    doubt, and the reference the tests check the fold against.
    """
    outcome = BatchOutcome()
    # enrolments first: the log then tells a subject's story in a sensible order even when
    # its enrolment and first results arrive in one batch from two topics
    envelopes = sorted(envelopes, key=_processing_order)
    recorded_at, stored = await uow.stored([e.id for e in envelopes])
    new: dict[uuid.UUID, Envelope] = {}
    for envelope in envelopes:
        if envelope.id not in stored:
            new.setdefault(envelope.id, envelope)
    outcome.stored = len(new)
    outcome.duplicates = len({e.id for e in envelopes}) - len(new)
    touched: dict[tuple[str, str], set[str]] = {}
    latest: dict[tuple[str, str], Envelope] = {}
    fresh: dict[tuple[str, str], set[uuid.UUID]] = {}
    for envelope in new.values():
        payload = envelope.payload()
        inputs = _inputs_of(payload)
        if inputs is None:
            continue
        assert isinstance(payload, SubjectEvent)
        key = (payload.study_id, payload.subject_id)
        touched.setdefault(key, set()).update(inputs)
        fresh.setdefault(key, set()).add(envelope.id)
        latest[key] = envelope
    if not touched:
        await uow.append(envelopes, expected_versions={}, recorded_at=recorded_at)
        return outcome
    histories = await uow.histories(touched)
    log_of = _Provisional(histories, recorded_at)
    log_of.fold(new.values())
    superseding: list[Envelope] = []
    conflicts: list[Envelope] = []
    for envelope in new.values():
        result = envelope.payload()
        if isinstance(result, LabResultReported):
            links, conflict = supersedes(envelope, result, histories)
            # folded at once: the next report of the observation in this batch finds
            # the standing ones these links leave
            log_of.fold([*links, *conflict])
            superseding += links
            conflicts += conflict
    # what changed besides new facts (a correction, an enrolment) makes a subject's rules
    # walk its whole history; otherwise the engine may look at the new facts alone
    whole = {_key(e) for e in superseding} | {
        key for key, inputs in touched.items() if ENROLMENT in inputs
    }
    raised: list[Envelope] = []
    for key, inputs in touched.items():
        pack = packs.get(key[0])
        if pack is None:
            log.warning("rules.no_rule_pack", study_id=key[0], subject_id=key[1])
            continue
        history = histories[key]
        if history.judged_with != pack.version:
            # first sight of this subject in this process, or a new pack: every rule walks
            # the whole history once, so the record is in line with this pack before any
            # rule may look at new facts alone
            evaluation = evaluate(history, pack)
            history.judged_with = pack.version
        else:
            new_facts = None if key in whole or not incremental else fresh[key]
            evaluation = evaluate(history, pack, inputs, new_facts)
        outcome.walked += evaluation.walked
        for event, cause in zip(evaluation.events, evaluation.causes, strict=True):
            trigger = new.get(cause) if cause else None
            trigger = trigger or latest[key]
            raised.append(
                wrap(
                    event,
                    source=SOURCE,
                    event_id=event.signal_id if isinstance(event, SafetySignalRaised) else None,
                    correlation_id=trigger.correlation_id,
                    causation_id=cause or trigger.id,
                )
            )
    # the record's episodes move with the events, so the next batch starts from them
    log_of.fold(raised)
    raised = [*conflicts, *raised]
    await uow.append(
        [*envelopes, *superseding, *raised],
        expected_versions=log_of.expected_versions,
        recorded_at=recorded_at,
    )
    if raised:
        for envelope in raised:
            signal = isinstance(envelope.payload(), SignalEvent)
            (outcome.signals if signal else outcome.data_quality).append(envelope)
            _log_raised(envelope)
        await uow.enqueue(
            [(e, SAFETY_SIGNALS) for e in outcome.signals]
            + [(e, DATA_QUALITY) for e in outcome.data_quality]
        )
    return outcome


class _Provisional:
    """Folds the batch's new events into the histories where the log will put them.

    Each subject's stream must still be at the version its history was read at when the
    batch is appended (``expected_versions``); then every event folded here gets exactly
    the stream version and time it is stored with. A batch that fails to commit leaves
    these histories ahead of the log: the caller drops them (the consumer clears its cache).
    """

    def __init__(
        self, histories: Mapping[tuple[str, str], SubjectHistory], recorded_at: datetime
    ) -> None:
        self._histories = histories
        self._recorded_at = recorded_at
        self._streams = {subject_stream(*key): key for key in histories}
        self.expected_versions = {
            stream: histories[key].version for stream, key in self._streams.items()
        }

    def fold(self, envelopes: Iterable[Envelope]) -> None:
        for envelope in envelopes:
            payload = envelope.payload()
            key = self._streams.get(payload.stream_id)
            if key is None:
                continue  # a subject this batch does not judge: read from the log when it is
            history = self._histories[key]
            history.apply(
                envelope.type, payload, envelope.id, self._recorded_at, history.version + 1
            )


def _inputs_of(payload: EventPayload) -> set[str] | None:
    """What rules a new fact concerns (None: not a fact the rules judge)."""
    if isinstance(payload, SubjectEnrolled):
        return {ENROLMENT}
    if isinstance(payload, LabResultReported):
        return {payload.loinc_code} if payload.loinc_code else set()
    if isinstance(payload, LabResultUnreadable):
        return set()  # no rule judges it; its data-quality issue is raised all the same
    if isinstance(payload, AdverseEventReported):
        return {"adverse-event"}
    if isinstance(payload, MedicationRecorded):
        return {"medication"}
    return None


def _log_raised(envelope: Envelope) -> None:
    payload = envelope.payload()
    # rules.signal_raised, rules.signal_escalated, ... and rules.data_quality_issue
    what = envelope.type.removeprefix("org.vigil.safety_signal.").rsplit(".", 1)[0]
    log.info(
        f"rules.signal_{what}" if isinstance(payload, SignalEvent) else "rules.data_quality_issue",
        type=envelope.type,
        signal_id=str(getattr(payload, "signal_id", "")) or None,
        rule_id=getattr(payload, "rule_id", None),
        grade=getattr(payload, "grade", None),
        study_id=envelope.study_id,
        subject=envelope.subject,
        correlation_id=str(envelope.correlation_id),
    )


def _key(envelope: Envelope) -> tuple[str, str]:
    payload = envelope.payload()
    assert isinstance(payload, SubjectEvent)
    return (payload.study_id, payload.subject_id)
