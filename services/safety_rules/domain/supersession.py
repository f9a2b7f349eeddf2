"""Which report of an observation stands: result status decides, not arrival (pure).

Laboratories re-send results, and messages overtake each other on the way: a preliminary
can arrive after its final, an original after its correction. HL7 v2.5.1 table 0085
(OBX-11) and FHIR R4 ObservationStatus say what each status means, and so which of two
reports of one observation (one ``LabResultReported.identity``) replaces the other:

====== ============================== ============================== =======
status HL7 v2.5.1 table 0085          FHIR ObservationStatus          rank
====== ============================== ============================== =======
P      P preliminary (also R entered, preliminary, registered         1
       not verified; S partial)
F      F final: "can only be changed  final                           2
       with a corrected result"
C      C correction, "replaces a      corrected, amended (a           3
       final result"                  correction is a kind of
                                      amendment: both replace final)
X D W  X cannot be obtained, D        cancelled (X), entered-in-      3
       deleted, W posted as wrong     error (W)
====== ============================== ============================== =======

A new report replaces the standing one when its rank is at least the standing one's:

- C and F replace P; P replaces P (a newer preliminary); C replaces F and C (a correction
  of a correction);
- an F arriving while a final stands replaces it only when it says the same (a final
  re-sent: "updated", nothing new to say). A different final is not a correction (table
  0085: F "can only be changed with a corrected result"): both stand, both are judged (no
  alert is lost) and the two are raised as ``conflicting-results`` for a person to decide,
  until a C replaces them all. This is also how two OBX of one test under one OBR without
  a sub-id (HL7 v2.5.1 7.4.2.4: OBX-4 tells them apart) are heard;
- X, D and W cancel whatever stands ("retracted");
- after a cancellation only a C re-issues the result: the lab says explicitly that this is
  the corrected result (table 0085: a final "can only be changed with a corrected
  result"; FHIR: a record entered in error is corrected, never finalised again). A P or F
  arriving after a cancellation cannot be told apart from the very report the
  cancellation withdrew, arriving late, so it must not bring it back: it is "late", and
  raised as ``conflicting-results`` so that a person asks the laboratory which is right;
- a P or F arriving after a report of higher rank (a P after its F, a P or F after the C
  it came before) never replaces it: it is kept, and itself marked superseded by the
  standing report ("late"), so it is never judged.

The standing reports of an observation are its reports, in stream order, that nothing
superseded (one, or several conflicting finals). Both the stream order and the supersede
links are in the subject's log, so the decision is the same whether the history was built
in this process or read back after a restart.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from shared.events import DataQualityIssueRaised, LabResultReported, ResultStatus

Reason = Literal["corrected", "retracted", "updated", "late"]

_RANK: dict[ResultStatus, int] = {
    ResultStatus.PRELIMINARY: 1,
    ResultStatus.FINAL: 2,
    ResultStatus.CORRECTED: 3,
    ResultStatus.CANNOT_OBTAIN: 3,
    ResultStatus.DELETED: 3,
    ResultStatus.WRONG: 3,
}


@dataclass(frozen=True)
class Report:
    """One report of an observation, as its history holds it: its status and, for a
    measurement, what it says (value, comparator, unit, qualitative, text)."""

    event_id: uuid.UUID
    status: ResultStatus
    result: tuple[object, ...] | None = None


@dataclass(frozen=True)
class Supersession:
    """``superseded`` gives way to ``superseding``, for ``reason``."""

    superseded: uuid.UUID
    superseding: uuid.UUID
    reason: Reason


@dataclass(frozen=True)
class Decision:
    """What a new report does: the links it makes, and the standing reports it conflicts
    with (neither replaces the other: a person must decide)."""

    links: tuple[Supersession, ...] = ()
    conflicts_with: tuple[uuid.UUID, ...] = ()


def reported_result(result: LabResultReported) -> tuple[object, ...] | None:
    """What a report says, to tell a final re-sent from a different one (None: a
    cancellation, which says nothing)."""
    if not result.result_status.is_measurement:
        return None
    if result.value is not None:  # the number, not how it was spelled ('7.0', '7.00')
        return (result.value.normalize(), result.comparator, result.unit)
    return (None, result.qualitative, result.value_text)


def conflict_issue(
    result: LabResultReported, event_id: uuid.UUID, decision: Decision
) -> DataQualityIssueRaised | None:
    """The data-quality issue a report raises when it conflicts with standing reports of
    its observation (None: it does not). It names the observation by its analyte and
    collection time and the reports by event id; never a value or an identifier."""
    if not decision.conflicts_with:
        return None
    others = ", ".join(str(other) for other in decision.conflicts_with)
    analyte = result.loinc_code or f"local code {result.local_code}"
    where = f"{analyte} collected {result.collected_at.isoformat()}"
    if not any(link.reason == "late" for link in decision.links):
        detail = (
            f"two final reports of one observation ({where}) differ: report {event_id} "
            f"and report {others}; a final is changed only by a corrected result (HL7 "
            "v2.5.1 table 0085), so both stand and both are judged until the laboratory "
            "sends a correction (C) or says which is right"
        )
    else:
        detail = (
            f"report {event_id} ({result.result_status.value}) of an observation ({where}) "
            f"arrived after report {others} cancelled it; it is kept but not judged: ask "
            "the laboratory whether the result stands (a corrected result, C, re-issues it)"
        )
    return DataQualityIssueRaised(
        study_id=result.study_id,
        subject_id=result.subject_id,
        issue="conflicting-results",
        detail=detail,
        related_event_id=event_id,
    )


def replaces(new: ResultStatus, standing: ResultStatus) -> bool:
    """Whether a report of status ``new`` may replace a standing report of ``standing``."""
    return _RANK[new] >= _RANK[standing]


def reason_for(new: ResultStatus, standing: ResultStatus) -> Reason:
    """Why ``new`` and the standing report are linked (see the module's table)."""
    if not replaces(new, standing):
        return "late"
    if not new.is_measurement:
        return "retracted"
    if new == ResultStatus.CORRECTED:
        return "corrected"
    return "updated"


def standing_before(
    reports: Sequence[Report], event_id: uuid.UUID, superseded: set[uuid.UUID]
) -> list[Report]:
    """The reports that stood when ``event_id`` arrived: those before it, in stream order,
    that nothing superseded (empty: ``event_id`` is the observation's first)."""
    index = next((i for i, report in enumerate(reports) if report.event_id == event_id), None)
    if index is None:
        return []
    return [report for report in reports[:index] if report.event_id not in superseded]


def decide(new: Report, standing: Sequence[Report]) -> Decision:
    """The links a new report makes with the standing ones, and whom it conflicts with."""
    if not standing:
        return Decision()
    last = standing[-1]
    if any(reason_for(new.status, s.status) == "late" for s in standing):
        # kept, never judged; after a cancellation a person must look (it may be the
        # withdrawn report arriving late, or the laboratory reporting it again)
        cancelled = tuple(s.event_id for s in standing if not s.status.is_measurement)
        return Decision((Supersession(new.event_id, last.event_id, "late"),), cancelled)
    if new.status == ResultStatus.FINAL:
        finals = [s for s in standing if s.status == ResultStatus.FINAL]
        same = next((s for s in finals if s.result == new.result), None)
        if same is not None:  # a final re-sent: a plain duplicate
            return Decision((Supersession(same.event_id, new.event_id, "updated"),))
        links = tuple(
            Supersession(s.event_id, new.event_id, "updated")
            for s in standing
            if s.status != ResultStatus.FINAL
        )
        return Decision(links, tuple(s.event_id for s in finals))
    return Decision(
        tuple(
            Supersession(s.event_id, new.event_id, reason_for(new.status, s.status))
            for s in standing
        )
    )
