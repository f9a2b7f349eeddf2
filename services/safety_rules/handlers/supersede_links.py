"""The supersede links and conflict issue one new lab result makes, as envelopes to store
(moved out of ``handlers.py``; the decision itself is ``domain/supersession.py``)."""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from services.safety_rules.domain.event_source import SOURCE
from services.safety_rules.domain.history import SubjectHistory
from services.safety_rules.domain.supersession import (
    Report,
    conflict_issue,
    decide,
    reported_result,
)
from shared.events import Envelope, LabResultReported, LabResultSuperseded, wrap

log = structlog.get_logger(__name__)


def supersedes(
    envelope: Envelope,
    result: LabResultReported,
    histories: Mapping[tuple[str, str], SubjectHistory],
) -> tuple[list[Envelope], list[Envelope]]:
    """The links this result makes with the standing reports of the same observation (it
    replaces them, or, a late preliminary or final, is itself replaced), and the
    data-quality issue it raises when it conflicts with them."""
    history = histories[(result.study_id, result.subject_id)]
    if envelope.id in history.set_aside:
        # a report whose value or time cannot be right (set aside, raised as a data-quality
        # issue) changes nothing: it neither corrects nor retracts the report that stands,
        # so a signal raised on it stays (issue 15 item 8: an impossible value never
        # changes a clinical signal); a later plausible correction replaces both
        return [], []
    standing = history.standing_reports(result.identity, envelope.id)
    decision = decide(Report(envelope.id, result.result_status, reported_result(result)), standing)
    wrapped: list[Envelope] = []
    for supersession in decision.links:
        link = LabResultSuperseded(
            study_id=result.study_id,
            subject_id=result.subject_id,
            observation_key=result.identity,
            superseded_event_id=supersession.superseded,
            superseding_event_id=supersession.superseding,
            reason=supersession.reason,
        )
        log.info(
            "rules.result_superseded",
            reason=supersession.reason,
            superseded=str(supersession.superseded),
            by=str(supersession.superseding),
            correlation_id=str(envelope.correlation_id),
        )
        wrapped.append(
            wrap(
                link,
                source=SOURCE,
                correlation_id=envelope.correlation_id,
                causation_id=envelope.id,
            )
        )
    issue = conflict_issue(result, envelope.id, decision)
    conflict = [
        wrap(issue, source=SOURCE, correlation_id=envelope.correlation_id, causation_id=envelope.id)
        for issue in ([issue] if issue is not None else [])
    ]
    return wrapped, conflict
