"""Findings of an outside review (issue 12): a result is filed under its own subject, and
only a genuine correction of the same observation replaces it.

What Vigil promises (README *Subject identifiers* and *Corrections*): each HL7 OBX is
filed under the PID of its own PATIENT_RESULT group; a FHIR subject id comes only from
the study's identifier system, never from a hospital's reference; a result's identity is
what makes it one observation (its sender's message id with its analyte and collection
time, or a FHIR Identifier's system and value), so distinct results never supersede each
other. Every test goes through the real interfaces and reads the audit log as the schema
owner only to see what was kept.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.mllp import MllpClient, ack_code, hl7_message, msh
from tests.support.results import haemoglobin, new_subject_id
from tests.support.services import RunningServices
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

STUDY = "NCT05262686"
SYSTEM = "urn:vigil:study:NCT05262686"  # the study's FHIR subject identifier system
FHIR = {"content-type": "application/fhir+json"}
LAB_RESULT = "org.vigil.lab_result.reported.v1"
SUPERSEDED = "org.vigil.lab_result.superseded.v1"
RAISED = "org.vigil.safety_signal.raised.v1"


async def events_of(db: asyncpg.Connection, subject: str, kind: str) -> list[asyncpg.Record]:
    return list(
        await db.fetch(
            "SELECT * FROM events WHERE subject_id = $1 AND type = $2 ORDER BY position",
            subject,
            kind,
        )
    )


async def stored(db: asyncpg.Connection, event_ids: list[str]) -> bool:
    ids = [uuid.UUID(i) for i in event_ids]
    count: int = await db.fetchval("SELECT count(*) FROM events WHERE event_id = ANY($1)", ids)
    return count == len(ids)


async def at_least(
    rows: Awaitable[list[asyncpg.Record]], count: int
) -> list[asyncpg.Record] | None:
    found = list(await rows)
    return found if len(found) >= count else None


# --- HL7: an ORU with several patients ---------------------------------------------------


async def test_an_oru_with_two_patients_never_files_the_second_patients_result_under_the_first(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """ORU^R01 repeats its PATIENT_RESULT group (PID, OBR, OBX) per patient: every OBX is
    filed under the PID of its own group (or the whole message is refused), so subject B's
    critical haemoglobin never lands on subject A's record and alert."""
    first, second = new_subject_id(), new_subject_id()
    control = f"MULTI{uuid.uuid4().hex[:8]}"
    message = hl7_message(
        msh("LIS", "PKUPH-LAB", "ORU^R01^ORU_R01", control),
        f"PID|1||{first}^^^{STUDY}^SS",
        f"OBR|1|P-{control}-1|F-{control}-1|58410-2^CBC^LN|||20261120080000+0800",
        "OBX|1|NM|718-7^Hemoglobin^LN||13.5|g/dL|12-16|N|||F",
        f"PID|2||{second}^^^{STUDY}^SS",
        f"OBR|2|P-{control}-2|F-{control}-2|58410-2^CBC^LN|||20261120080000+0800",
        "OBX|1|NM|718-7^Hemoglobin^LN||6.1|g/dL|12-16|L|||F",
    )
    client = await MllpClient.connect(services.mllp_port)
    try:
        ack = await client.exchange(message)
    finally:
        await client.close()

    query = f"""SELECT subject_id, payload->>'value' AS value FROM events
                WHERE type = '{LAB_RESULT}' AND payload->>'source_message_id' LIKE $1"""
    if ack_code(ack) == "AA":
        rows = await eventually(
            lambda: at_least(db.fetch(query, f"{control}/%"), 2),
            timeout=60,
            what="both results of the message in the audit log",
        )
        assert rows is not None
        filed = sorted((row["subject_id"], row["value"]) for row in rows)
        assert filed == sorted([(first, "13.5"), (second, "6.1")]), filed
    else:  # refusing such a message is also correct; then nothing may be filed at all
        await asyncio.sleep(5)
        assert await db.fetch(query, f"{control}/%") == []


# --- FHIR: the subject id comes from the study's identifier, not a hospital reference ----


async def test_an_observation_naming_its_study_subject_by_identifier_is_never_filed_under_the_hospital_reference(  # noqa: E501
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """A hospital's FHIR server references its own Patient (``Patient/<its logical id>``,
    often the MRN) and adds the study's identifier. Vigil files the result under the
    study subject id (or refuses the ambiguity) and never makes the hospital id a subject
    id, which would go out in the e-mail subject line."""
    subject, mrn = new_subject_id(), f"MRN{uuid.uuid4().int % 10**9:09d}"
    observation = {
        "resourceType": "Observation",
        "identifier": [{"system": "urn:oid:1.2.3.4.5", "value": f"OBS-{uuid.uuid4().hex[:8]}"}],
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
        "subject": {
            "reference": f"Patient/{mrn}",
            "identifier": {"system": SYSTEM, "value": subject},
        },
        "effectiveDateTime": "2026-11-20T08:30:00+08:00",
        "valueQuantity": {
            "value": 6.2,
            "unit": "g/dL",
            "system": "http://unitsofmeasure.org",
            "code": "g/dL",
        },
    }
    async with httpx.AsyncClient(base_url=services.ingest_url, timeout=30) as client:
        response = await client.post(
            "/fhir/r4/Observation",
            content=json.dumps(observation),
            headers={**FHIR, **services.headers},
        )
    assert response.status_code < 500, response.text
    if response.status_code == 201:
        event_id = response.json()["issue"][0]["diagnostics"].rsplit(" ", 1)[1]
        await eventually(lambda: stored(db, [event_id]), timeout=60, what="the result stored")
        filed_under = await db.fetchval(
            "SELECT subject_id FROM events WHERE event_id = $1", uuid.UUID(event_id)
        )
        assert filed_under == subject, "a hospital reference became the subject id"
    assert await db.fetchval("SELECT count(*) FROM events WHERE subject_id = $1", mrn) == 0


# --- Observation identity: distinct results never supersede each other -------------------


async def test_results_of_one_message_sharing_its_source_message_id_do_not_supersede_each_other(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """``source_message_id`` is "the sender's id of this result or message". A lab that
    sends one message's results with that message's id (haemoglobin and platelets) gets
    both judged: the platelet count does not supersede the critical haemoglobin."""
    subject, message_id = new_subject_id(), f"MSG-{uuid.uuid4().hex[:8]}"
    platelets = {
        **haemoglobin(subject, "250"),
        "loinc_code": "777-3",
        "unit": "10*9/L",
        "reference_low": "150",
        "reference_high": "400",
    }
    body = [
        haemoglobin(subject, "6.0", source_message_id=message_id),
        {**platelets, "source_message_id": message_id},
    ]
    async with httpx.AsyncClient(
        base_url=services.ingest_url, headers=services.headers, timeout=30
    ) as client:
        response = await client.post("/v1/lab-results", json=body)
    assert response.status_code == 202, response.text
    await eventually(
        lambda: stored(db, response.json()["event_ids"]), timeout=60, what="both results stored"
    )

    assert await events_of(db, subject, SUPERSEDED) == [], "a platelet count superseded an Hb"
    await eventually(lambda: events_of(db, subject, RAISED), timeout=60, what="the anaemia signal")


async def test_fhir_observations_with_the_same_identifier_value_in_different_systems_are_different_results(  # noqa: E501
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """A FHIR Identifier is its system and value together. Two Observations whose
    identifiers share a value but not a system (two laboratories' accession numbers) are
    two results: the second, a normal value a day later, does not supersede the first or
    retract its anaemia signal."""
    subject, value = new_subject_id(), str(uuid.uuid4().int % 10**6)

    def observation(system: str, hb: float, day: str) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "identifier": [{"system": system, "value": value}],
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
            "subject": {"reference": f"Patient/{subject}"},
            "effectiveDateTime": f"2026-11-{day}T08:30:00+08:00",
            "valueQuantity": {
                "value": hb,
                "unit": "g/dL",
                "system": "http://unitsofmeasure.org",
                "code": "g/dL",
            },
        }

    async with httpx.AsyncClient(
        base_url=services.ingest_url, headers={**FHIR, **services.headers}, timeout=30
    ) as client:
        first = await client.post(
            "/fhir/r4/Observation", content=json.dumps(observation("urn:lab-a", 6.0, "20"))
        )
        assert first.status_code == 201, first.text
        await eventually(lambda: events_of(db, subject, RAISED), timeout=60, what="the signal")
        second = await client.post(
            "/fhir/r4/Observation", content=json.dumps(observation("urn:lab-b", 13.5, "21"))
        )
    assert second.status_code == 201, second.text
    await eventually(
        lambda: at_least(
            db.fetch(
                "SELECT 1 FROM events WHERE subject_id = $1 AND type = $2", subject, LAB_RESULT
            ),
            2,
        ),
        timeout=60,
        what="the second result stored",
    )
    assert await events_of(db, subject, SUPERSEDED) == [], "another lab's result superseded it"


async def test_an_observation_referencing_a_bundle_patient_is_filed_under_its_study_identifier(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """In a transaction Bundle an Observation names its Patient by the entry's fullUrl;
    that Patient's study identifier, never its hospital id, is the subject id."""
    subject, mrn = new_subject_id(), f"MRN{uuid.uuid4().int % 10**9:09d}"
    patient_url = f"urn:uuid:{uuid.uuid4()}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": patient_url,
                "resource": {
                    "resourceType": "Patient",
                    "id": mrn,
                    "identifier": [
                        {"system": "urn:oid:1.2.3.4.5", "value": mrn},
                        {"system": SYSTEM, "value": subject},
                    ],
                    "gender": "female",
                    "birthDate": "1980-02-03",
                    "managingOrganization": {"reference": "Organization/PKUPH-02"},
                },
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "identifier": [{"system": "urn:oid:1.2.3.4.5", "value": uuid.uuid4().hex}],
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
                    "subject": {"reference": patient_url},
                    "effectiveDateTime": "2026-11-20T08:30:00+08:00",
                    "valueQuantity": {
                        "value": 13.2,
                        "unit": "g/dL",
                        "system": "http://unitsofmeasure.org",
                        "code": "g/dL",
                    },
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    async with httpx.AsyncClient(
        base_url=services.ingest_url, headers={**FHIR, **services.headers}, timeout=30
    ) as client:
        response = await client.post("/fhir/r4", content=json.dumps(bundle))
    assert response.status_code == 200, response.text
    assert [e["response"]["status"] for e in response.json()["entry"]] == ["201 Created"] * 2
    await eventually(
        lambda: at_least(
            db.fetch(
                "SELECT 1 FROM events WHERE subject_id = $1 AND type = $2", subject, LAB_RESULT
            ),
            1,
        ),
        timeout=60,
        what="the result filed under the study subject",
    )
    assert await db.fetchval("SELECT count(*) FROM events WHERE subject_id = $1", mrn) == 0
