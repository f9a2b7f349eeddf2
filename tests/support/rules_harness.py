"""The rules service's batch handler on its in-memory unit of work
(services/safety_rules/adapters/in_memory.py), for clinical cases: the store on the cases'
clock, and compact facts for case tables."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from services.safety_rules.adapters import in_memory
from services.safety_rules.adapters.in_memory import InMemoryUnitOfWork as InMemoryUnitOfWork
from services.safety_rules.domain.rule_pack import RulePack
from services.safety_rules.handlers.facts import BatchOutcome, handle_batch
from shared.events import (
    AdverseEventReported,
    EventPayload,
    LabResultReported,
    MedicationRecorded,
    SubjectEnrolled,
    wrap,
)

STUDY = "NCT05262686"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
RECORDED_FROM = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@dataclass
class InMemoryRulesStore(in_memory.InMemoryRulesStore):
    """The service's in-memory store on the cases' clock."""

    #: when Vigil records the facts: after the case's clinical times (placed from T0), as
    #: a site records what happened; a case about a moment still to come places its fact
    #: after this
    clock: datetime = RECORDED_FROM


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
