"""Issue 15 (items 8 and 11), outside break round, through the running services (MLLP,
FHIR R4 and JSON over HTTP, the broker, the rules, PostgreSQL): impossible values, times
and reference ranges as senders really send them. Each test failed on the code it was
written against and says what a demanding user expects, with the standard."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.mllp import ack_code, exchange_bytes, hl7_message, msh
from tests.support.results import enrolment, haemoglobin, new_subject_id, stored_payloads
from tests.support.services import RunningServices
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration
STUDY = "NCT05262686"
UCUM = "http://unitsofmeasure.org"
FHIR = {"content-type": "application/fhir+json"}
LAB = "org.vigil.lab_result.reported.v1"
ISSUE = "org.vigil.data_quality.issue_raised.v1"
SIGNAL = "org.vigil.safety_signal.raised.v1"


async def _stored(db: asyncpg.Connection, subject: str, kind: str, key: str) -> list[str]:
    return [json.loads(p)[key] for p in await stored_payloads(db, subject, kind)]


async def _settled(db: asyncpg.Connection, subject: str, issue: str) -> list[str]:
    """Wait until the rules have judged the subject's result (``issue`` stored), then give
    them a few more seconds; return the rule ids of every signal raised."""

    async def probe() -> list[str] | None:
        found = await _stored(db, subject, ISSUE, "issue")
        return found if issue in found else None

    await eventually(probe, timeout=60, what=f"a {issue} issue stored")
    await asyncio.sleep(3)
    return await _stored(db, subject, SIGNAL, "rule_id")


async def test_hl7_haemoglobin_at_most_zero_is_warned_and_never_alerted(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """ORU^R01 with two patients: the first has haemoglobin SN "<=^0" g/dL (only 0 or a
    negative concentration: impossible, like the issue's -3 g/dL) and a critical but
    possible platelet count of 2 x 10^9/L. Vigil answers AA without any ERR, and the
    rules e-mail CTCAE grade 3 anaemia for the impossible value. Expected (item 8): AA with
    one ERR of severity W naming the haemoglobin's OBX (ERR-2 OBX^1^5, HL7 v2.5.1 2.15.5),
    one implausible-value issue, no anaemia signal, and thrombocytopenia still raised."""
    first, second, control = new_subject_id(), new_subject_id(), f"LE0{uuid.uuid4().hex[:8]}"
    message = hl7_message(
        msh("LIS", "PKUPH-LAB", "ORU^R01^ORU_R01", control),
        f"PID|1||{first}^^^{STUDY}^SS||~||19850412|F",
        f"OBR|1|P-{control}|F-{control}|58410-2^CBC^LN|||20261120080000+0800",
        "OBX|1|SN|718-7^Hemoglobin^LN||<=^0|g/dL|12.0-16.0|LL|||F",
        "OBX|2|NM|777-3^Platelets^LN||2|10*9/L|125-350|LL|||F",
        f"PID|2||{second}^^^{STUDY}^SS||~||19850412|F",
        f"OBR|1|Q-{control}|G-{control}|58410-2^CBC^LN|||20261120080000+0800",
        "OBX|1|NM|718-7^Hemoglobin^LN||12.9|g/dL|12.0-16.0|N|||F",
    )
    ack = await exchange_bytes(services.mllp_port, message)
    assert ack_code(ack) == "AA"
    errs = [(str(e[2]), str(e[4])) for e in ack.segments("ERR")] if "ERR" in str(ack) else []
    assert errs == [("OBX^1^5", "W")]
    signals = await _settled(db, first, "unknown-subject")
    assert "thrombocytopenia-lt-75" in signals
    assert "anaemia-hb-le-9" not in signals
    assert (await _stored(db, first, ISSUE, "issue")).count("implausible-value") == 1


def _alt(subject: str, value: dict[str, Any], low: dict[str, Any], high: dict[str, Any]) -> str:
    return json.dumps(
        {
            "resourceType": "Observation",
            "identifier": [{"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"}],
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "1742-6"}]},
            "subject": {"reference": f"Patient/{subject}"},
            "effectiveDateTime": "2026-11-20T08:00:00+08:00",
            "valueQuantity": value,
            "referenceRange": [{"low": low, "high": high}],
        }
    )


def _q(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


async def test_fhir_alt_in_ukat_with_its_range_in_units_per_litre_alerts(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    """FHIR R4 referenceRange.low/high are Quantities with their own unit. ALT 2.02 ukat/L
    (= 121 U/L: 3 x ULN, the study's liver-injury threshold) sent with the range 7-40 U/L is
    created (201) and then nothing at all happens: no liver signal, no data-quality issue
    but the unknown subject's. Expected: liver injury raised (CTCAE v5.0 grade 2), the range
    converted to the value's unit (ukat/L x 60, DOMAIN.md) or set aside with an issue."""
    subject = new_subject_id()
    async with httpx.AsyncClient(
        base_url=services.ingest_url, headers={**services.headers, **FHIR}, timeout=30
    ) as client:
        created = await client.post(
            "/fhir/r4/Observation",
            content=_alt(subject, _q(2.02, "ukat/L"), _q(7, "U/L"), _q(40, "U/L")),
        )
    assert created.status_code == 201, created.text
    signals = await _settled(db, subject, "unknown-subject")
    assert "liver-alt-ast-gt-3-uln" in signals, (
        signals,
        await _stored(db, subject, ISSUE, "issue"),
    )


@pytest.mark.parametrize(
    "times",
    [
        {"effectivePeriod": {"start": "2026-11-20T08:00:00Z", "end": "2026-11-19T08:00:00Z"}},
        {"effectiveDateTime": "2026-11-20T08:00:00Z", "issued": "2026-11-19T08:00:00Z"},
    ],
    ids=["period-ends-before-it-starts", "issued-before-collected"],
)
async def test_fhir_refuses_collection_times_that_contradict_themselves(
    services: RunningServices, times: dict[str, Any]
) -> None:
    """Observation.effectivePeriod ending the day before it starts breaks FHIR R4 Period
    invariant per-1 ("start SHALL have a lower value than end"); an Observation issued
    (made available, after verification: FHIR R4 Observation.issued) the day before its
    specimen was collected cannot be either. Vigil answers 201 and judges the result at a
    time it cannot place. Expected (item 11: "what cannot be placed is refused with the
    reason"): 422 with an OperationOutcome naming Observation.effective[x] (or
    effectivePeriod / issued)."""
    subject = new_subject_id()
    resource = json.loads(_alt(subject, _q(121, "U/L"), _q(7, "U/L"), _q(40, "U/L")))
    del resource["effectiveDateTime"]
    resource.update(times)
    async with httpx.AsyncClient(
        base_url=services.ingest_url, headers={**services.headers, **FHIR}, timeout=30
    ) as client:
        answer = await client.post("/fhir/r4/Observation", content=json.dumps(resource))
    assert answer.status_code == 422, answer.text
    expressions = [e for i in answer.json()["issue"] for e in i.get("expression", [])]
    assert any(e.startswith(("Observation.effective", "Observation.issued")) for e in expressions)


async def test_fhir_quantity_at_most_zero_is_created_with_a_warning(
    services: RunningServices,
) -> None:
    """valueQuantity {comparator "<=", value 0 g/dL} for haemoglobin (FHIR R4
    Quantity.comparator) allows only 0 or less: impossible, as Vigil itself says for a plain
    0 (201 with a warning). Here it answers 201 with no warning. Expected (item 8): 201
    with an OperationOutcome warning at Observation.value[x] saying implausible-value."""
    subject = new_subject_id()
    resource = json.loads(_alt(subject, _q(0, "g/dL"), _q(12, "g/dL"), _q(16, "g/dL")))
    resource["code"] = {"coding": [{"system": "http://loinc.org", "code": "718-7"}]}
    resource["valueQuantity"]["comparator"] = "<="
    async with httpx.AsyncClient(
        base_url=services.ingest_url, headers={**services.headers, **FHIR}, timeout=30
    ) as client:
        answer = await client.post("/fhir/r4/Observation", content=json.dumps(resource))
    assert answer.status_code == 201, answer.text
    warnings = [i for i in answer.json()["issue"] if i["severity"] == "warning"]
    assert [w["expression"] for w in warnings] == [["Observation.value[x]"]], answer.text


@pytest.mark.parametrize("written", ["20261120", "2099"])
async def test_json_collection_time_written_as_digits_is_not_placed_in_1970(
    client: httpx.AsyncClient, db: asyncpg.Connection, written: str
) -> None:
    """A sender bridging HL7 writes collected_at as the HL7 DTM "20261120" (or the year
    "2099"). Vigil reads the digits as Unix seconds, stores the result as collected on
    1970-08-23T12:05:20Z (or 1970-01-01T00:34:59Z) and answers 202 with no warning: a
    2026 haemoglobin becomes a 1970 result (a pre-study baseline, or set aside as "before
    birth"), and a 2099 one is not refused. Expected (item 11: a time that cannot be placed
    is refused naming the field; the API takes RFC 3339 date-times): 422 naming
    collected_at."""
    subject = new_subject_id()
    answer = await client.post(
        "/v1/lab-results", json=haemoglobin(subject, "8.0", collected_at=written)
    )
    stored = [json.loads(p)["collected_at"] for p in await stored_payloads(db, subject, LAB)]
    assert answer.status_code == 422, (answer.text, stored)
    assert [e["field"] for e in answer.json()["errors"]] == ["collected_at"]


async def test_json_collection_time_a_day_ahead_with_its_offset_is_refused(
    client: httpx.AsyncClient,
) -> None:
    """collected_at 20 hours after the request, written with an explicit offset (RFC 3339:
    an absolute instant, no zone guess to excuse): a specimen cannot be collected after it
    was analysed and reported. Vigil accepts it (202) and it becomes the subject's latest
    result. Expected (item 11): 422 naming collected_at, as for 2099."""
    subject = new_subject_id()
    ahead = (datetime.now(UTC) + timedelta(hours=20)).isoformat(timespec="seconds")
    answer = await client.post(
        "/v1/lab-results", json=haemoglobin(subject, "8.0", collected_at=ahead)
    )
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == ["collected_at"]


async def test_json_enrolment_weight_of_half_a_kilogram_raises_no_renal_alert(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    """An adult of this study (18-70 years) enrolled with weight_kg 0.5 (grams typed as
    kilograms, or a lost digit) is accepted (202); a normal creatinine of 1.0 mg/dL then
    gives a Cockcroft-Gault clearance below 1 mL/min and a CTCAE grade 4 renal
    insufficiency alert. Expected (item 8: an impossible value never raises a clinical
    signal): the enrolment refused (422 naming weight_kg), or no renal signal and an
    implausible-value issue."""
    subject = new_subject_id()
    enrolled = await client.post(
        "/v1/subjects", json={**enrolment(subject), "birth_date": "1981-05-05", "weight_kg": 0.5}
    )
    if enrolled.status_code == 422:
        assert [e["field"] for e in enrolled.json()["errors"]] == ["weight_kg"]
        return
    assert enrolled.status_code == 202, enrolled.text
    creatinine = {
        "subject_id": subject,
        "loinc_code": "2160-0",
        "value": "1.0",
        "unit": "mg/dL",
        "reference_low": "0.5",
        "reference_high": "1.1",
        "collected_at": "2026-11-20T08:30:00+08:00",
        "source_message_id": f"LAB-{uuid.uuid4().hex[:12]}",
    }
    sent = await client.post("/v1/lab-results", json=creatinine)
    assert sent.status_code == 202, sent.text

    async def judged() -> list[str] | None:
        found = await _stored(db, subject, ISSUE, "issue")
        return found or await _stored(db, subject, SIGNAL, "rule_id") or None

    await eventually(judged, timeout=60, what="the creatinine judged")
    await asyncio.sleep(3)
    assert "renal-crcl-le-30" not in await _stored(db, subject, SIGNAL, "rule_id")
    assert "implausible-value" in await _stored(db, subject, ISSUE, "issue")
