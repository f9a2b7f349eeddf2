"""Object-level rules: which of a request's events its sender may write (pure).

A principal writes only its own studies and, when its key names sites, only subjects of
those sites. The source that first enrolled a subject owns it, and the source that first
reported an observation, an adverse event or a medication record owns that record:
moving the subject to another site, re-enrolling it, and every later report of an owned
record (a correction, a cancellation, a final after a preliminary, an update) are
accepted only from the owner or from a principal allowed to amend others. A subject or a
record nobody owns yet may be written by any principal of the study (a result may arrive
before its subject's enrolment).

Ingest keeps ownership in PostgreSQL; this module only decides, from what the database
says, so the same rules hold for HTTP, FHIR and MLLP alike.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from services.ingest.domain.principals import Principal
from shared.events import (
    AdverseEventReported,
    DataQualityIssueRaised,
    Envelope,
    EventPayload,
    LabResultReported,
    LabResultUnreadable,
    MedicationRecorded,
    SubjectEnrolled,
    SubjectEvent,
)

RecordKind = Literal["observation", "adverse-event", "medication"]
RefusalCode = Literal["forbidden-study", "forbidden-site", "forbidden-object"]
SubjectKey = tuple[str, str]  # (study_id, subject_id)


@dataclass(frozen=True)
class RecordKey:
    """One owned record: an observation (its identity across corrections), an adverse
    event (``ae_id``) or a medication record (``medication_id``) of one subject."""

    study_id: str
    subject_id: str
    kind: RecordKind
    identity: str


@dataclass(frozen=True)
class SubjectOwnership:
    owner: str
    site_id: str


@dataclass(frozen=True)
class Refusal:
    """One event the principal may not write: which event, the metric's code, the field
    (as the event names it) and why, in words that carry no value from the message."""

    event_id: uuid.UUID
    code: RefusalCode
    field: str
    problem: str


@dataclass(frozen=True)
class Ownership:
    """What the database says about the subjects and records a request touches."""

    subjects: Mapping[SubjectKey, SubjectOwnership] = field(default_factory=dict)
    records: Mapping[RecordKey, str] = field(default_factory=dict)


@dataclass
class Decision:
    refusals: list[Refusal] = field(default_factory=list)
    moves: dict[SubjectKey, str] = field(default_factory=dict)
    """Subjects whose site changes, and to which site (applied with the receipt)."""


_IDENTITY_FIELD: dict[RecordKind, str] = {
    "observation": "observation_key",
    "adverse-event": "ae_id",
    "medication": "medication_id",
}


def record_key(payload: EventPayload) -> RecordKey | None:
    """The owned record an event reports on; None for enrolments and derived events."""
    if isinstance(payload, LabResultReported):
        # observation_key, else source_message_id: the identity corrections share
        return RecordKey(payload.study_id, payload.subject_id, "observation", payload.identity)
    if isinstance(payload, AdverseEventReported):
        return RecordKey(payload.study_id, payload.subject_id, "adverse-event", payload.ae_id)
    if isinstance(payload, MedicationRecorded):
        return RecordKey(payload.study_id, payload.subject_id, "medication", payload.medication_id)
    return None


def _subject(payload: EventPayload) -> SubjectKey | None:
    if isinstance(payload, SubjectEvent):
        return (payload.study_id, payload.subject_id)
    return None


def _followers(envelopes: Sequence[Envelope]) -> set[uuid.UUID]:
    """Events ingest derived from another event of the same request (a data-quality
    issue about a result): they stand or fall with that event, and are not judged on
    their own. One whose cause is not in the request is judged (and refused: no rule
    covers it)."""
    ids = {envelope.id for envelope in envelopes}
    return {
        envelope.id
        for envelope in envelopes
        if isinstance(envelope.payload(), DataQualityIssueRaised) and envelope.causation_id in ids
    }


def precheck(envelopes: Sequence[Envelope], principal: Principal) -> list[Refusal]:
    """What is refused whatever the database holds: another study, an enrolment at
    another site."""
    refusals = []
    followers = _followers(envelopes)
    for envelope in envelopes:
        if envelope.id in followers:
            continue
        payload = envelope.payload()
        study = payload.study
        if study is None or not principal.allows_study(study):
            refusals.append(
                Refusal(
                    envelope.id,
                    "forbidden-study",
                    "study_id",
                    "this key may not write to this study",
                )
            )
        elif isinstance(payload, SubjectEnrolled) and not principal.allows_site(payload.site_id):
            refusals.append(
                Refusal(
                    envelope.id,
                    "forbidden-site",
                    "site_id",
                    "this key may not enrol subjects at this site",
                )
            )
    return refusals


def claims(
    envelopes: Sequence[Envelope],
) -> tuple[dict[SubjectKey, str], set[RecordKey], set[SubjectKey]]:
    """What a request would own if nobody did yet: each enrolled subject (at the site of
    its first enrolment in the request), each record; and every subject it touches."""
    enrolled: dict[SubjectKey, str] = {}
    records: set[RecordKey] = set()
    touched: set[SubjectKey] = set()
    for envelope in envelopes:
        payload = envelope.payload()
        subject = _subject(payload)
        if subject is not None:
            touched.add(subject)
        if isinstance(payload, SubjectEnrolled) and subject is not None:
            enrolled.setdefault(subject, payload.site_id)
        elif (key := record_key(payload)) is not None:
            records.add(key)
    return enrolled, records, touched


def decide(envelopes: Sequence[Envelope], principal: Principal, known: Ownership) -> Decision:
    """Each event in request order, against the owners the database holds (including the
    claims this request just made): what is refused, and which subjects move."""
    decision = Decision()
    sites = {key: owned.site_id for key, owned in known.subjects.items()}
    followers = _followers(envelopes)
    for envelope in envelopes:
        payload = envelope.payload()
        subject = _subject(payload)
        if envelope.id in followers or subject is None:
            continue
        site = sites.get(subject)
        if not principal.allows_site(site):
            decision.refusals.append(
                Refusal(
                    envelope.id,
                    "forbidden-site",
                    "subject_id",
                    "the subject is enrolled at a site this key may not write",
                )
            )
            continue
        refusal = _ownership_refusal(envelope, payload, subject, principal, known)
        if refusal is not None:
            decision.refusals.append(refusal)
        elif isinstance(payload, SubjectEnrolled) and payload.site_id != site:
            sites[subject] = decision.moves[subject] = payload.site_id
    return decision


def _ownership_refusal(
    envelope: Envelope,
    payload: EventPayload,
    subject: SubjectKey,
    principal: Principal,
    known: Ownership,
) -> Refusal | None:
    if isinstance(payload, SubjectEnrolled):
        owned = known.subjects.get(subject)
        owner = owned.owner if owned is not None else None
        field_name, what = "subject_id", "the subject was enrolled by another source"
    elif isinstance(payload, LabResultUnreadable):
        # a result that could not be read has no observation identity to own: whoever
        # may write the subject (its study and site, checked above) may report it
        return None
    elif (key := record_key(payload)) is not None:
        owner = known.records.get(key)
        field_name = _IDENTITY_FIELD[key.kind]
        what = f"this {key.kind.replace('-', ' ')} was first reported by another source"
    else:  # an event kind without an ownership rule: refuse rather than guess
        return Refusal(
            envelope.id, "forbidden-object", "(event)", "no ownership rule covers this event"
        )
    if owner is None or owner == principal.source or principal.may_amend_others:
        return None
    return Refusal(
        envelope.id,
        "forbidden-object",
        field_name,
        f"{what}; only that source, or a key allowed to amend others, may change it",
    )


def without(envelopes: Sequence[Envelope], refused: set[uuid.UUID]) -> list[Envelope]:
    """The envelopes left when the refused events (and what derives from them) go."""
    return [
        envelope
        for envelope in envelopes
        if envelope.id not in refused and envelope.causation_id not in refused
    ]
