"""Issue 15 items 8 and 11 through every channel of the running services: a value that
cannot be physiological is accepted with a warning and raised as a data-quality issue,
never as a signal; a time that cannot be right (collected in 2099, born in the future)
is refused naming the field (HL7 AE/ERR, FHIR 422 OperationOutcome, JSON 422)."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import httpx
import pytest

from tests.support.mllp import ack_code, exchange_bytes, hl7_message, msh
from tests.support.results import enrolment, haemoglobin, new_subject_id, stored_payloads
from tests.support.services import RunningServices
from tests.support.waiting import eventually
from tests.unit.test_fhir_mapping import observation

pytestmark = pytest.mark.integration
STUDY = "NCT05262686"
FHIR = {"content-type": "application/fhir+json"}
ISSUE = "org.vigil.data_quality.issue_raised.v1"
SIGNAL = "org.vigil.safety_signal.raised.v1"


def _oru(control: str, subject: str, obx: str) -> bytes:
    return hl7_message(
        msh("LIS", "PKUPH-LAB", "ORU^R01^ORU_R01", control),
        f"PID|1||{subject}^^^{STUDY}^SS",
        f"OBR|1|P-{control}|F-{control}|58410-2^CBC^LN|||20261120080000+0800",
        obx,
    )


async def _issues(db: asyncpg.Connection, subject: str) -> list[str]:
    async def probe() -> list[str] | None:
        found = [json.loads(p)["issue"] for p in await stored_payloads(db, subject, ISSUE)]
        return found if "implausible-value" in found else None

    return await eventually(probe, timeout=60, what="an implausible-value issue stored")


async def test_hl7_impossible_value_is_aa_with_a_warning_and_no_signal(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    subject, control = new_subject_id(), f"IMP{uuid.uuid4().hex[:8]}"
    message = _oru(control, subject, "OBX|1|NM|718-7^Hemoglobin^LN||-3|g/dL|12-16|L|||F")
    ack = await exchange_bytes(services.mllp_port, message)
    assert ack_code(ack) == "AA"
    (err,) = ack.segments("ERR")
    assert (str(err[2]), str(err[4])) == ("OBX^1^5", "W")
    assert "physiological" in ack.unescape(str(err[8]))
    await _issues(db, subject)
    await asyncio.sleep(3)  # the rules have had their chance: no anaemia was raised
    assert await stored_payloads(db, subject, SIGNAL) == []
    # one issue for the result (ingest's), not one more per rule; and the subject unknown
    assert sorted(await _issues(db, subject)) == ["implausible-value", "unknown-subject"]


async def test_hl7_future_collection_and_birth_dates_are_refused_naming_the_field(
    services: RunningServices,
) -> None:
    subject, control = new_subject_id(), f"FUT{uuid.uuid4().hex[:8]}"
    future = "OBX|1|NM|718-7^Hemoglobin^LN||8.0|g/dL|12-16|L|||F|||20991120080000+0800"
    ack = await exchange_bytes(services.mllp_port, _oru(control, subject, future))
    assert ack_code(ack) == "AE"
    assert str(ack.segment("ERR")[2]) == "OBX^1^14"
    adt = hl7_message(
        msh("LIS", "PKUPH-LAB", "ADT^A04^ADT_A01", f"ADT{uuid.uuid4().hex[:8]}"),
        f"PID|1||{subject}^^^{STUDY}^SS||~||20990101|F",
        "PV1|1|O|RHEUM^^^PKUPH-01",
    )
    ack = await exchange_bytes(services.mllp_port, adt)
    assert ack_code(ack) == "AE"
    assert str(ack.segment("ERR")[2]) == "PID^1^7"


async def test_json_refuses_impossible_times_and_warns_of_impossible_values(
    client: httpx.AsyncClient,
) -> None:
    subject = new_subject_id()
    future = await client.post(
        "/v1/lab-results",
        json=haemoglobin(subject, "8.0", collected_at="2099-11-20T08:30:00+08:00"),
    )
    assert future.status_code == 422, future.text
    assert [e["field"] for e in future.json()["errors"]] == ["collected_at"]
    born = await client.post(
        "/v1/subjects", json={**enrolment(subject), "birth_date": "2099-01-01"}
    )
    assert born.status_code == 422, born.text
    assert [e["field"] for e in born.json()["errors"]] == ["birth_date"]
    day0 = await client.post("/v1/subjects", json={**enrolment(subject), "day0": "1970-01-01"})
    assert day0.status_code == 422, day0.text
    assert [e["field"] for e in day0.json()["errors"]] == ["day0"]
    negative = await client.post("/v1/lab-results", json=haemoglobin(subject, "-3"))
    assert negative.status_code == 202, negative.text
    (warning,) = negative.json()["warnings"]
    assert warning["issue"] == "implausible-value"
    assert warning["event_id"] == negative.json()["event_ids"][0]


async def test_fhir_refuses_impossible_times_and_warns_of_impossible_values(
    services: RunningServices,
) -> None:
    subject = new_subject_id()
    reference = {"reference": f"Patient/{subject}"}
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": f"urn:vigil:study:{STUDY}", "value": subject}],
        "gender": "female",
        "birthDate": "2099-01-01",
        "managingOrganization": {"reference": "Organization/PKUPH-01"},
    }
    async with httpx.AsyncClient(
        base_url=services.ingest_url, headers={**services.headers, **FHIR}, timeout=30
    ) as client:
        born = await client.post("/fhir/r4/Patient", content=json.dumps(patient))
        future = await client.post(
            "/fhir/r4/Observation",
            content=json.dumps(
                observation(
                    id="f1", subject=reference, effectiveDateTime="2099-11-20T08:00:00+08:00"
                )
            ),
        )
        negative = await client.post(
            "/fhir/r4/Observation",
            content=json.dumps(
                observation(
                    id="f2",
                    subject=reference,
                    valueQuantity={
                        "value": -30,
                        "unit": "g/L",
                        "system": "http://unitsofmeasure.org",
                        "code": "g/L",
                    },
                )
            ),
        )
    assert born.status_code == 422, born.text
    assert born.json()["issue"][0]["expression"] == ["Patient.birthDate"]
    assert future.status_code == 422, future.text
    assert future.json()["issue"][0]["expression"] == ["Observation.effective[x]"]
    assert negative.status_code == 201, negative.text
    warnings = [i for i in negative.json()["issue"] if i["severity"] == "warning"]
    assert [w["expression"] for w in warnings] == [["Observation.value[x]"]]
    assert warnings[0]["diagnostics"].startswith("implausible-value")
