"""The rules service's batch handler on an in-memory unit of work, for clinical cases.

The in-memory store keeps the same contract as PostgreSQL's (append idempotent by event id
and refused for an id with other content, stream versions, an outbox entry once per event,
a batch that commits whole or not at all), so a case runs the real ``handle_batch`` and
engine; ``tests/contract/test_rules_unit_of_work_contract.py`` runs one suite against both.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from services.safety_rules.domain.history import SubjectHistory
from services.safety_rules.domain.rule_pack import RulePack
from services.safety_rules.handlers.facts import BatchOutcome, handle_batch
from shared.events import (
    AdverseEventReported,
    Envelope,
    EventPayload,
    LabResultReported,
    MedicationRecorded,
    SubjectEnrolled,
    subject_stream,
    wrap,
)
from shared.eventstore import EventIdConflict, StreamVersionConflict
from shared.eventstore.canonical import json_text

STUDY = "NCT05262686"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
RECORDED_FROM = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@dataclass
class _Stored:
    envelope: Envelope
    version: int
    recorded_at: datetime
    #: its place in the whole log (1 first), as an EventIdConflict names it
    position: int


@dataclass
class InMemoryRulesStore:
    """Events by id and by stream; the clock advances one minute per batch."""

    events: dict[uuid.UUID, _Stored] = field(default_factory=dict)
    streams: dict[str, list[uuid.UUID]] = field(default_factory=dict)
    outbox: list[tuple[str, Envelope]] = field(default_factory=list)
    histories: dict[tuple[str, str], SubjectHistory] = field(default_factory=dict)
    #: when Vigil records the facts: after the case's clinical times (placed from T0), as
    #: a site records what happened; a case about a moment still to come places its fact
    #: after this
    clock: datetime = RECORDED_FROM

    def unit_of_work(self) -> InMemoryUnitOfWork:
        return InMemoryUnitOfWork(self)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """What a batch stores commits when the block ends, or is undone when it raises (as
        the service's transaction); the kept histories are dropped then, as the service's
        cache is, since they may have folded in what is undone."""
        events, streams = dict(self.events), {k: list(v) for k, v in self.streams.items()}
        outbox = list(self.outbox)
        try:
            yield
        except BaseException:
            self.events, self.streams, self.outbox = events, streams, outbox
            self.histories.clear()
            raise

    def stream(self, study: str, subject: str) -> list[Envelope]:
        ids = self.streams.get(subject_stream(study, subject), [])
        return [self.events[i].envelope for i in ids]


class InMemoryUnitOfWork:
    def __init__(self, store: InMemoryRulesStore) -> None:
        self._store = store

    async def stored(self, event_ids: Sequence[uuid.UUID]) -> tuple[datetime, set[uuid.UUID]]:
        self._store.clock += timedelta(minutes=1)
        return self._store.clock, {i for i in event_ids if i in self._store.events}

    async def append(
        self,
        envelopes: Sequence[Envelope],
        *,
        expected_versions: Mapping[str, int],
        recorded_at: datetime,
    ) -> None:
        store = self._store
        for stream_id, expected in expected_versions.items():
            actual = len(store.streams.get(stream_id, []))
            if actual != expected:
                raise StreamVersionConflict(stream_id, expected, actual)
        new: dict[uuid.UUID, Envelope] = {}
        for envelope in envelopes:
            # as PostgreSQL's store: an id again is a no-op, with other content a conflict;
            # checked for the whole batch before anything of it is stored
            known = store.events.get(envelope.id)
            earlier = known.envelope if known is not None else new.get(envelope.id)
            if earlier is not None:
                if not _same_event(earlier, envelope):
                    raise EventIdConflict(envelope.id, known.position if known else None)
                continue
            new[envelope.id] = envelope
        for envelope in new.values():
            stream = store.streams.setdefault(envelope.payload().stream_id, [])
            stream.append(envelope.id)
            store.events[envelope.id] = _Stored(
                envelope, len(stream), recorded_at, position=len(store.events) + 1
            )

    async def histories(
        self, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], SubjectHistory]:
        """Kept between batches and fed only what is new, as the service's cache is."""
        result = {}
        for study, subject in keys:
            history = self._store.histories.setdefault(
                (study, subject), SubjectHistory(study, subject)
            )
            for event_id in self._store.streams.get(subject_stream(study, subject), []):
                stored = self._store.events[event_id]
                history.apply(
                    stored.envelope.type,
                    stored.envelope.data,
                    event_id,
                    stored.recorded_at,
                    stored.version,
                )
            result[(study, subject)] = history
        return result

    async def enqueue(self, items: Sequence[tuple[Envelope, str]]) -> None:
        """One outbox entry per event, as the outbox table's key on the event id keeps it."""
        queued = {envelope.id for _, envelope in self._store.outbox}
        for envelope, topic in items:
            if envelope.id not in queued:
                queued.add(envelope.id)
                self._store.outbox.append((topic, envelope))


def _same_event(stored: Envelope, again: Envelope) -> bool:
    """Whether an id arrived again with the content it was stored with (type and payload,
    compared as the stored JSON text, as PostgreSQL's store compares them)."""
    return stored.type == again.type and json_text(stored.data) == json_text(again.data)


async def run_batches(
    store: InMemoryRulesStore, batches: Iterable[Sequence[EventPayload]], pack: RulePack
) -> list[BatchOutcome]:
    outcomes = []
    for batch in batches:
        envelopes = [wrap(payload, source="/test/site") for payload in batch]
        with store.transaction():
            outcome = await handle_batch(envelopes, store.unit_of_work(), {pack.study_id: pack})
        outcomes.append(outcome)
    return outcomes


# -- compact facts for case tables -----------------------------------------------------------


def _when(value: Any) -> datetime:
    """Case times: day offsets from T0 (number) or ISO text."""
    if isinstance(value, int | float):
        return T0 + timedelta(days=float(value))
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def fact(spec: Mapping[str, Any], subject: str) -> EventPayload:
    """One fact from a case table row (keys: enrol, lab, ae, med, fhir)."""
    base = {"study_id": STUDY, "subject_id": subject}
    if "enrol" in spec:
        e = dict(spec["enrol"])
        return SubjectEnrolled.model_validate(
            {
                **base,
                "site_id": e.get("site", "PKUPH-01"),
                "sex": e.get("sex", "F"),
                "birth_date": e.get("birth_date", "1980-06-15"),
                "weight_kg": e.get("weight_kg", 60),
                "day0": e.get("day0", (T0.date()).isoformat()) if e.get("day0", True) else None,
            }
        )
    if "lab" in spec:
        lab = dict(spec["lab"])
        at = _when(lab.get("at", 1))
        value = lab.get("value")
        comparator = None
        if isinstance(value, str) and value[:1] in "<>":
            comparator = value[:2] if value[1:2] == "=" else value[:1]
            value = value[len(comparator) :]
        ref = str(lab.get("ref", "")).split("-") if lab.get("ref") else [None, None]
        return LabResultReported.model_validate(
            {
                **base,
                "loinc_code": str(lab["loinc"]),
                "value": Decimal(str(value)) if value is not None else None,
                "comparator": comparator,
                "unit": lab.get("unit"),
                "qualitative": lab.get("qualitative"),
                "value_text": lab.get("text"),
                "reference_low": Decimal(ref[0]) if ref[0] else None,
                "reference_high": Decimal(ref[1]) if ref[1] else None,
                "collected_at": at,
                "result_status": lab.get("status", "F"),
                "abnormal_flags": tuple(lab.get("flags", ())),
                "source_message_id": lab.get("msg", f"M-{lab['loinc']}-{at.isoformat()}"),
                "observation_key": lab.get("id"),
            }
        )
    if "ae" in spec:
        ae = dict(spec["ae"])
        return AdverseEventReported.model_validate(
            {
                **base,
                "ae_id": str(ae.get("id", "AE1")),
                "term": ae.get("term", "event"),
                "meddra_code": ae.get("meddra"),
                "system_organ_class": ae.get("soc_name"),
                "system_organ_class_code": ae.get("soc"),
                "onset": _when(ae.get("onset", 1)),
                "end": _when(ae["end"]) if "end" in ae else None,
                "serious": ae.get("serious", False),
                "seriousness_criteria": tuple(ae.get("criteria", ())),
                "ctcae_grade": ae.get("grade"),
                "severity": ae.get("severity"),
                "nyha_class": ae.get("nyha"),
                "outcome": ae.get("outcome", "unknown"),
                "source_message_id": ae.get("msg", f"AE-{ae.get('id', 'AE1')}-{ae.get('v', 1)}"),
            }
        )
    if "med" in spec:
        med = dict(spec["med"])
        return MedicationRecorded.model_validate(
            {
                **base,
                "category": med.get("category", "concomitant"),
                "medication_id": str(med.get("id", "MED1")),
                "drug": med["drug"],
                "drug_code": med.get("atc"),
                "dose": Decimal(str(med["dose"])),
                "dose_unit": med.get("unit", "mg"),
                "route": med.get("route", "oral"),
                "frequency": med.get("freq", "QD"),
                "start": _when(med.get("start", 1)),
                "stop": _when(med["stop"]) if "stop" in med else None,
                "source_message_id": med.get(
                    "msg", f"MED-{med.get('id', 'MED1')}-{med.get('v', 1)}"
                ),
            }
        )
    if "fhir" in spec:
        # a FHIR R4 MedicationStatement or MedicationAdministration, read as ingest reads it
        from services.ingest.domain.fhir_medications import medication_event

        resource = {"subject": {"reference": f"Patient/{subject}"}, **spec["fhir"]}
        event, issues = medication_event(resource, study_id=STUDY, zone=UTC)
        assert event is not None, issues
        return event
    raise ValueError(f"unknown fact {spec!r}")


def day(n: float) -> date:
    return (T0 + timedelta(days=n)).date()
