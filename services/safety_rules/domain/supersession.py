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

- C and F replace P; P replaces P (a newer preliminary); F replaces F (a final re-sent:
  "updated"); C replaces F and C (a correction of a correction);
- X, D and W cancel whatever stands ("retracted");
- after a cancellation only a C re-issues the result: the lab says explicitly that this is
  the corrected result (table 0085: a final "can only be changed with a corrected
  result"; FHIR: a record entered in error is corrected, never finalised again). A P or F
  arriving after a cancellation cannot be told apart from the very report the
  cancellation withdrew, arriving late, so it must not bring it back;
- a P or F arriving after a report of higher rank (a P after its F, a P or F after the C
  it came before) never replaces it: it is kept, and itself marked superseded by the
  standing report ("late"), so it is never judged.

The standing report of an observation is its last report, in stream order, that nothing
superseded. Both the stream order and the supersede links are in the subject's log, so
the decision is the same whether the history was built in this process or read back after
a restart.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from shared.events import ResultStatus

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
    """One report of an observation, as its history holds it."""

    event_id: uuid.UUID
    status: ResultStatus


@dataclass(frozen=True)
class Supersession:
    """``superseded`` gives way to ``superseding``, for ``reason``."""

    superseded: uuid.UUID
    superseding: uuid.UUID
    reason: Reason


def replaces(new: ResultStatus, standing: ResultStatus) -> bool:
    """Whether a report of status ``new`` replaces the standing report of ``standing``."""
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
) -> Report | None:
    """The report that stood when ``event_id`` arrived: the last one before it, in stream
    order, that nothing superseded (None: ``event_id`` is the observation's first)."""
    index = next((i for i, report in enumerate(reports) if report.event_id == event_id), None)
    if index is None:
        return None
    for report in reversed(reports[:index]):
        if report.event_id not in superseded:
            return report
    return None


def decide(new: Report, standing: Report | None) -> Supersession | None:
    """The link a new report makes with the standing one (None: nothing stood)."""
    if standing is None:
        return None
    reason = reason_for(new.status, standing.status)
    if reason == "late":
        return Supersession(new.event_id, standing.event_id, reason)
    return Supersession(standing.event_id, new.event_id, reason)
