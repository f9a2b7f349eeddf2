"""The workload's items as bytes on the wire: JSON requests, FHIR R4 resources and Bundles,
HL7 v2 messages in MLLP frames, and the poison records. Pure.

What ingest keeps verbatim (the request body, the HL7 block inside its frame) is what the
checker looks for in the ``rejected-input`` stream when a message was refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from soak.workload import (
    HB,
    START,
    STUDY,
    AdverseEvent,
    Enrolment,
    FactKey,
    Item,
    Lab,
    Medication,
    Subject,
)

FHIR_JSON = "application/fhir+json"
START_BLOCK, END_BLOCK, CARRIAGE_RETURN = b"\x0b", b"\x1c", b"\x0d"
OUT_OF_RANGE = "9999-12-31T23:00:00-14:00"  # valid ISO 8601, beyond PostgreSQL's range


@dataclass(frozen=True)
class HttpRequest:
    path: str
    body: bytes
    content_type: str = "application/json"


@dataclass(frozen=True)
class MllpMessage:
    block: bytes  # the HL7 message: what ingest keeps
    frame: bytes  # what goes on the wire (normally start block + block + end block + CR)


Wire = HttpRequest | MllpMessage


def kept_bytes(wire: Wire) -> bytes:
    """The bytes ingest keeps verbatim for this message."""
    return wire.body if isinstance(wire, HttpRequest) else wire.block


def _json(path: str, body: object) -> HttpRequest:
    return HttpRequest(path, json.dumps(body, separators=(",", ":")).encode())


def _fhir(path: str, resource: object) -> HttpRequest:
    return HttpRequest(path, json.dumps(resource, separators=(",", ":")).encode(), FHIR_JSON)


def mllp(block: bytes, *, final_cr: bool = True) -> MllpMessage:
    return MllpMessage(
        block, START_BLOCK + block + END_BLOCK + (CARRIAGE_RETURN if final_cr else b"")
    )


def _hl7_time(moment: datetime) -> str:
    return moment.strftime("%Y%m%d%H%M%S%z")


def _pid(subject: str) -> str:
    return f"PID|1||{subject}^^^{STUDY}^SS"


def _msh(sender: tuple[str, str], kind: str, control: str) -> str:
    application, facility = sender
    return (
        f"MSH|^~\\&|{application}|{facility}|VIGIL|SPONSOR|20260302080000||{kind}|{control}|P|2.5.1"
    )


def _lab_json(
    lab: Lab, *, collected_at: str | None = None, value: str | None = None
) -> dict[str, Any]:
    return {
        "subject_id": lab.subject,
        "loinc_code": lab.analyte.loinc,
        "value": value if value is not None else str(lab.value),
        "unit": lab.analyte.unit,
        "reference_low": str(lab.analyte.low),
        "reference_high": str(lab.analyte.high),
        "collected_at": collected_at or lab.collected_at.isoformat(),
        "source_message_id": lab.key,
    }


def _observation(lab: Lab, resource_id: str, *, effective: str | None = None) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": resource_id,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": lab.analyte.loinc}]},
        "subject": {"reference": f"Patient/{lab.subject}"},
        "effectiveDateTime": effective or lab.collected_at.isoformat(),
        "valueQuantity": {
            "value": float(lab.value),
            "unit": lab.analyte.unit,
            "system": "http://unitsofmeasure.org",
            "code": lab.analyte.unit,
        },
        "referenceRange": [
            {"low": {"value": float(lab.analyte.low)}, "high": {"value": float(lab.analyte.high)}}
        ],
    }


def _oru(item: Item, labs: list[Lab], *, subject: str | None = None) -> bytes:
    when = _hl7_time(labs[0].collected_at)
    segments = [
        _msh(("LIS", "PKUPH-LAB"), "ORU^R01^ORU_R01", item.message_id),
        _pid(subject or item.subject),
        f"OBR|1|ORD{item.seq}|FIL{item.seq}|58410-2^CBC^LN|||{when}",
    ]
    for n, lab in enumerate(labs, start=1):
        a = lab.analyte
        segments.append(
            f"OBX|{n}|NM|{a.loinc}^{a.name}^LN||{lab.value}|{a.unit}|{a.low}-{a.high}|N|||F|||"
            f"{_hl7_time(lab.collected_at)}"
        )
    return "\r".join(segments).encode()


def _adt(item: Item, enrolment: Enrolment, *, subject: str | None = None) -> bytes:
    s = enrolment.subject
    return "\r".join(
        [
            _msh(("EDC", "PKUPH"), "ADT^A04^ADT_A01", item.message_id),
            f"PID|1||{subject or s.id}^^^{STUDY}^SS||~||{s.birth_date:%Y%m%d}|{s.sex}",
            f"PV1|1|O|RHEUM^^^{s.site}",
        ]
    ).encode()


def _enrolment(item: Item, enrolment: Enrolment) -> Wire:
    s = enrolment.subject
    if item.channel == "mllp":
        return mllp(_adt(item, enrolment))
    if item.channel == "fhir":
        return _fhir(
            "/fhir/r4/Patient",
            {
                "resourceType": "Patient",
                # the subject id comes only from the study's identifier system
                "identifier": [{"system": f"urn:vigil:study:{STUDY}", "value": s.id}],
                "gender": "female" if s.sex == "F" else "male",
                "birthDate": s.birth_date.isoformat(),
                "managingOrganization": {"reference": f"Organization/{s.site}"},
            },
        )
    return _json(
        "/v1/subjects",
        {
            "subject_id": s.id,
            "site_id": s.site,
            "sex": s.sex,
            "birth_date": s.birth_date.isoformat(),
            "weight_kg": str(s.weight_kg),
            "day0": "2026-03-02",
        },
    )


def _labs(item: Item, labs: list[Lab]) -> Wire:
    if item.channel == "mllp":
        return mllp(_oru(item, labs))
    if item.channel == "fhir":
        observations = [_observation(lab, lab.key.rsplit("/", 1)[1]) for lab in labs]
        if len(observations) == 1:
            return _fhir("/fhir/r4/Observation", observations[0])
        entries = [
            {"resource": o, "request": {"method": "POST", "url": "Observation"}}
            for o in observations
        ]
        return _fhir(
            "/fhir/r4", {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        )
    return _json("/v1/lab-results", [_lab_json(lab) for lab in labs])


def _adverse_event(item: Item, ae: AdverseEvent) -> Wire:
    if item.channel == "fhir":
        resource: dict[str, Any] = {
            "resourceType": "AdverseEvent",
            "identifier": {"value": ae.key},
            "actuality": "actual",
            "event": {"text": ae.term},
            "subject": {"reference": f"Patient/{ae.subject}"},
            "date": ae.onset.isoformat(),
            "severity": {"coding": [{"code": "severe" if ae.serious else "mild"}]},
        }
        if ae.serious:
            resource["seriousness"] = {"coding": [{"code": "serious"}]}
        return _fhir("/fhir/r4/AdverseEvent", resource)
    body: dict[str, Any] = {
        "subject_id": ae.subject,
        "ae_id": ae.key,
        "term": ae.term,
        "onset": ae.onset.isoformat(),
        "serious": ae.serious,
        "severity": "severe" if ae.serious else "mild",
        "source_message_id": item.message_id,
    }
    if ae.serious:
        body["seriousness_criteria"] = ["hospitalisation"]
    return _json("/v1/adverse-events", body)


def _medication(item: Item, med: Medication) -> Wire:
    path = (
        "/v1/study-drug-administrations"
        if med.category == "study-drug"
        else "/v1/concomitant-medications"
    )
    return _json(
        path,
        {
            "subject_id": med.subject,
            "medication_id": med.key,
            "drug": med.drug,
            "dose": str(med.dose),
            "dose_unit": med.unit,
            "route": med.route,
            "frequency": med.frequency,
            "start": med.start.isoformat(),
            "source_message_id": item.message_id,
        },
    )


def _poison(item: Item) -> Wire:
    lab = Lab(item.subject, HB, HB.low + 1, START, f"{item.message_id}-P")
    match item.poison:
        case "json-date-out-of-range":
            return _json("/v1/lab-results", _lab_json(lab, collected_at=OUT_OF_RANGE))
        case "json-huge-number":
            return _json("/v1/lab-results", _lab_json(lab, value="1E+400"))
        case "fhir-date-out-of-range":
            return _fhir(
                "/fhir/r4/Observation",
                _observation(lab, item.message_id.lower() + "-p", effective=OUT_OF_RANGE),
            )
        case "hl7-not-hl7":
            return mllp(f"THIS IS NOT AN HL7 MESSAGE {item.message_id}".encode())
        case "hl7-unbuildable":
            placeholder = Subject(item.subject, "PKUPH-01", "F", START.date(), HB.high)
            spaced = item.subject.replace("-", " ")
            return mllp(_adt(item, Enrolment(placeholder), subject=spaced))
        case "hl7-no-final-cr":
            return mllp(_oru(item, [lab]), final_cr=False)
    raise ValueError(f"unknown poison kind {item.poison!r}; see soak.config.POISON_KINDS")


def poison_fact_keys(item: Item) -> set[FactKey]:
    """Where a poison lab result would be found in the audit log had ingest taken it."""
    message = item.message_id
    return {
        ("lab", f"{message}-P"),
        ("lab", f"fhir:Observation/{message.lower()}-p"),
        ("lab", f"{message}/OBR1/OBX1"),
    }


def render(item: Item) -> Wire:
    """The message for one item, on its channel."""
    if item.poison is not None:
        return _poison(item)
    first = item.facts[0]
    if isinstance(first, Enrolment):
        return _enrolment(item, first)
    if isinstance(first, Lab):
        return _labs(item, [fact for fact in item.facts if isinstance(fact, Lab)])
    if isinstance(first, AdverseEvent):
        return _adverse_event(item, first)
    return _medication(item, first)
