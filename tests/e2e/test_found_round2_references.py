"""Findings of an outside review, round 2: which patient and which study a result or a
Patient is filed under.

What Vigil promises (README *Subject identifiers*): every OBX is filed under the PID of
its own PATIENT_RESULT group or the whole message is refused; a reference to a Patient
the request carries gives *that* Patient's study identifier, and a reference two of them
answer to names neither; the study of a FHIR resource is the one its study identifiers
name that the key may write, never whichever identifier is listed first. Every test goes
through the real interfaces and reads the audit log as the schema owner only to see what
was kept.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.mllp import ack_code, err_location, exchange_bytes, hl7_message, msh
from tests.support.results import new_subject_id
from tests.support.services import RunningServices
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

STUDY = "NCT05262686"
SYSTEM = "urn:vigil:study:NCT05262686"  # the study's FHIR subject identifier system
FHIR = {"content-type": "application/fhir+json"}
LAB_RESULT = "org.vigil.lab_result.reported.v1"


def observation(subject_reference: dict[str, Any], value: float = 6.1) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "identifier": [{"system": "urn:oid:1.2.3.4.5", "value": f"OBS-{uuid.uuid4().hex[:8]}"}],
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
        "subject": subject_reference,
        "effectiveDateTime": "2026-11-20T08:30:00+08:00",
        "valueQuantity": {
            "value": value,
            "unit": "g/dL",
            "system": "http://unitsofmeasure.org",
            "code": "g/dL",
        },
    }


def patient(identifiers: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": identifiers,
        "birthDate": "1980-05-05",
        "gender": "female",
        "managingOrganization": {"reference": "Organization/PKUPH-01"},
    }


async def test_an_obx_before_any_pid_is_never_acknowledged_and_dropped(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """Sent: an ORU^R01 whose first OBX (a critical haemoglobin of 6.0 g/dL with its own
    OBX-14 collection time) comes before the message's PID (a badly mapped interface
    engine), followed by PID, OBR and a normal OBX. Promised: the OBX belongs to no
    patient, so the whole message is refused (AE, its ERR naming that OBX), kept as
    received, and nothing of it stored; never AA with the critical result dropped."""
    subject, control = new_subject_id(), f"PRE{uuid.uuid4().hex[:8]}"
    message = hl7_message(
        msh("LIS", "PKUPH-LAB", "ORU^R01^ORU_R01", control),
        "OBX|1|NM|718-7^Hemoglobin^LN||6.0|g/dL|12-16|LL|||F|||20261120080000+0800",
        f"PID|1||{subject}^^^{STUDY}^SS",
        f"OBR|1|P-{control}|F-{control}|58410-2^CBC^LN|||20261120080000+0800",
        "OBX|2|NM|777-3^Platelets^LN||250|10*9/L|150-400|N|||F",
    )
    ack = await exchange_bytes(services.mllp_port, message)
    assert ack_code(ack) == "AE"
    assert err_location(ack).startswith("OBX^1")
    kept = await db.fetchrow("SELECT outcome FROM received_messages WHERE raw = $1", message)
    assert kept is not None, "the refused message was not kept as received"
    assert kept["outcome"] == "rejected"
    await asyncio.sleep(3)
    stored = await db.fetchval(
        f"SELECT count(*) FROM events WHERE type = '{LAB_RESULT}' "
        "AND payload->>'source_message_id' LIKE $1",
        f"{control}/%",
    )
    assert stored == 0, "a refused message had results stored"


async def test_a_reference_that_two_contained_patients_answer_to_is_refused(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """Sent: an Observation (haemoglobin 6.1 g/dL) with two contained Patients both of
    id ``p``, one with study subject A, one with study subject B, and ``subject:
    {"reference": "#p"}``. Promised: ``#p`` names neither Patient (as a reference two
    Bundle entries answer to), so the Observation is a 422 naming
    ``Observation.subject.reference`` and filed under no one; never under whichever
    contained Patient came last."""
    first, second = new_subject_id(), new_subject_id()
    resource = {
        **observation({"reference": "#p"}),
        "contained": [
            {"resourceType": "Patient", "id": "p", "identifier": [{"system": SYSTEM, "value": s}]}
            for s in (first, second)
        ],
    }
    async with httpx.AsyncClient(base_url=services.ingest_url, timeout=30) as client:
        answer = await client.post(
            "/fhir/r4/Observation",
            content=json.dumps(resource),
            headers={**FHIR, **services.headers},
        )
    assert answer.status_code == 422, answer.text
    expressions = [e for i in answer.json()["issue"] for e in i.get("expression", [])]
    assert "Observation.subject.reference" in expressions
    assert first not in answer.text
    assert second not in answer.text
    await asyncio.sleep(3)
    filed = await db.fetch(
        f"SELECT subject_id FROM events WHERE type = '{LAB_RESULT}' AND subject_id = ANY($1)",
        [first, second],
    )
    assert filed == []


async def test_a_patient_co_enrolled_in_another_study_is_read_by_this_studys_system(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """Sent: the same FHIR Patient (a person co-enrolled in another trial) twice, with
    identifiers ``[urn:vigil:study:NCT05262686 A, urn:vigil:study:NCT04000000 X]`` and
    then in the other order, with a key of NCT05262686 only. Promised: the study is the
    one the identifiers name that the key may write, whatever their order; the subject
    id comes only from that study's system, so both are enrolled as A and the other
    trial's X is never taken."""
    subject = new_subject_id()
    ours = {"system": SYSTEM, "value": subject}
    other_subject = new_subject_id("X")
    other = {"system": "urn:vigil:study:NCT04000000", "value": other_subject}
    answers = []
    async with httpx.AsyncClient(base_url=services.ingest_url, timeout=30) as client:
        for identifiers in ([ours, other], [other, ours]):
            answer = await client.post(
                "/fhir/r4/Patient",
                content=json.dumps(patient(identifiers)),
                headers={**FHIR, **services.headers},
            )
            answers.append((answer.status_code, answer.text[:200]))
    assert [status for status, _ in answers] == [201, 201], answers
    await eventually(
        lambda: db.fetchval(
            "SELECT count(*) FROM events WHERE subject_id = $1 AND type LIKE '%enrolled%'",
            subject,
        ),
        timeout=60,
        what="the enrolment stored under the study's own subject id",
    )
    assert not await db.fetchval(
        "SELECT count(*) FROM events WHERE subject_id = $1", other_subject
    ), "the other trial's identifier was taken as the subject id"
