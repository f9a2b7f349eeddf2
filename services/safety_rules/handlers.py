"""What the rules service does with one batch of consumed records."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import structlog
from pydantic import ValidationError

from services.safety_rules.domain.evaluation import evaluate_lab_result
from services.safety_rules.domain.rule_pack import RulePack
from shared.events import (
    Envelope,
    LabResultReported,
    LabResultSuperseded,
    ResultStatus,
    SubjectEnrolled,
    wrap,
)
from shared.events.dead_letters import input_rejected
from shared.events.topics import SAFETY_SIGNALS

log = structlog.get_logger(__name__)
SOURCE = "/vigil/safety-rules"


@dataclass(frozen=True)
class Record:
    """One consumed Kafka record, as far as the handler cares."""

    topic: str
    partition: int
    offset: int
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def origin(self) -> str:
        return f"{self.topic}/{self.partition}@{self.offset}"


@dataclass(frozen=True)
class Rejected:
    """A record that is not a valid Vigil event; it goes to the dead-letter topic."""

    record: Record
    reason: str


@dataclass
class BatchOutcome:
    """What one batch did, for logs, metrics and tests."""

    stored: int = 0
    duplicates: int = 0
    signals: list[Envelope] = field(default_factory=list)


class RulesUnitOfWork(Protocol):
    """The storage one batch needs; everything it does commits or rolls back together."""

    async def append(self, envelopes: Sequence[Envelope]) -> set[uuid.UUID]: ...

    async def site_of(self, study_id: str, subject_id: str) -> str | None: ...

    async def enqueue(self, envelope: Envelope, topic: str) -> None: ...

    async def previous_report(
        self, result: LabResultReported, event_id: uuid.UUID
    ) -> uuid.UUID | None: ...


def parse_records(records: Sequence[Record]) -> tuple[list[Envelope], list[Rejected]]:
    """Split records into valid envelopes and rejects that name what is wrong."""
    envelopes: list[Envelope] = []
    rejected: list[Rejected] = []
    for record in records:
        try:
            envelopes.append(Envelope.from_json(record.value))
        except (ValidationError, ValueError) as error:
            rejected.append(Rejected(record, f"not a valid Vigil event: {error}"))
    return envelopes, rejected


def rejected_input(record: Record) -> Envelope:
    """The audit-log event for a record found on the dead-letter topic.

    Its id derives from the content, so a dead letter consumed twice is stored once.
    """
    headers = {key: value.decode(errors="replace") for key, value in record.headers}
    payload = input_rejected(record.value, headers, fallback_origin=record.origin)
    return wrap(payload, source=SOURCE)


def _processing_order(envelope: Envelope) -> int:
    # enrolments first, so a result in the same batch finds its subject
    return 0 if envelope.type == SubjectEnrolled.event_type else 1


async def handle_batch(
    envelopes: Sequence[Envelope],
    uow: RulesUnitOfWork,
    packs: Mapping[str, RulePack],
) -> BatchOutcome:
    """Store the batch and evaluate the rules on what is new.

    Only events that were not stored before are evaluated, so a redelivered batch
    raises no second signal.
    """
    outcome = BatchOutcome()
    # enrolments first: the log then tells a subject's story in a sensible order even when
    # its enrolment and first results arrive in one batch from two topics
    envelopes = sorted(envelopes, key=_processing_order)
    new_ids = await uow.append(envelopes)
    outcome.stored = len(new_ids)
    outcome.duplicates = len({e.id for e in envelopes}) - len(new_ids)
    seen: set[uuid.UUID] = set()
    superseding: list[Envelope] = []
    for envelope in envelopes:
        if envelope.id not in new_ids or envelope.id in seen:
            continue
        seen.add(envelope.id)
        payload = envelope.payload()
        if isinstance(payload, LabResultReported):
            if (link := await _supersedes(envelope, payload, uow)) is not None:
                superseding.append(link)
            outcome.signals.extend(await _evaluate(envelope, payload, uow, packs))
    if superseding:
        await uow.append(superseding)
    if outcome.signals:
        await uow.append(outcome.signals)
        for signal in outcome.signals:
            await uow.enqueue(signal, SAFETY_SIGNALS)
    return outcome


async def _supersedes(
    envelope: Envelope, result: LabResultReported, uow: RulesUnitOfWork
) -> Envelope | None:
    """The record that this result replaces an earlier report of the same observation."""
    earlier = await uow.previous_report(result, envelope.id)
    if earlier is None:
        return None
    if result.result_status == ResultStatus.CORRECTED:
        reason: Literal["corrected", "retracted", "updated"] = "corrected"
    elif not result.result_status.is_measurement:
        reason = "retracted"
    else:
        reason = "updated"
    link = LabResultSuperseded(
        study_id=result.study_id,
        subject_id=result.subject_id,
        observation_key=result.identity,
        superseded_event_id=earlier,
        superseding_event_id=envelope.id,
        reason=reason,
    )
    log.info(
        "rules.result_superseded",
        reason=reason,
        superseded=str(earlier),
        by=str(envelope.id),
        correlation_id=str(envelope.correlation_id),
    )
    return wrap(
        link, source=SOURCE, correlation_id=envelope.correlation_id, causation_id=envelope.id
    )


async def _evaluate(
    envelope: Envelope,
    result: LabResultReported,
    uow: RulesUnitOfWork,
    packs: Mapping[str, RulePack],
) -> list[Envelope]:
    pack = packs.get(result.study_id)
    if pack is None:
        log.warning("rules.no_rule_pack", study_id=result.study_id, event_id=str(envelope.id))
        return []
    site_id = await uow.site_of(result.study_id, result.subject_id)
    signals, problems = evaluate_lab_result(result, envelope.id, pack, site_id=site_id)
    for problem in problems:
        log.warning(
            "rules.unconvertible_unit",
            rule_id=problem.rule_id,
            reason=problem.reason,
            event_id=str(envelope.id),
            correlation_id=str(envelope.correlation_id),
        )
    raised = []
    for signal in signals:
        raised.append(
            wrap(
                signal,
                source=SOURCE,
                event_id=signal.signal_id,
                correlation_id=envelope.correlation_id,
                causation_id=envelope.id,
            )
        )
        log.info(
            "rules.signal_raised",
            rule_id=signal.rule_id,
            signal_id=str(signal.signal_id),
            study_id=signal.study_id,
            subject_id=signal.subject_id,
            correlation_id=str(envelope.correlation_id),
        )
    return raised
