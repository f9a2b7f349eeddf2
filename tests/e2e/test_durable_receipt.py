"""Ingest keeps every message verbatim before it answers, accepted or not."""

from __future__ import annotations

import hashlib
import json
import uuid

import asyncpg
import httpx
import pytest

from tests.support.services import RunningServices
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


async def test_accepted_message_is_kept_byte_for_byte(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    subject = f"DR-{uuid.uuid4().hex[:8]}"
    # deliberately odd spacing and key order: the original is kept as sent, not re-encoded
    raw = (
        (
            '{ "unit":"g/dL",  "value": 12.40, "loinc_code":"718-7", "subject_id":"SUBJECT",'
            ' "collected_at":"2026-11-01T08:00:00+08:00", "source_message_id":"ORIG-1" }'
        )
        .replace("SUBJECT", subject)
        .encode()
    )
    async with httpx.AsyncClient(base_url=services.ingest_url, headers=services.headers) as client:
        response = await client.post(
            "/v1/lab-results", content=raw, headers={"content-type": "application/json"}
        )
    assert response.status_code == 202
    event_id = uuid.UUID(response.json()["event_ids"][0])

    row = await db.fetchrow("SELECT * FROM received_messages WHERE $1 = ANY(event_ids)", event_id)
    assert bytes(row["raw"]) == raw
    assert bytes(row["raw_sha256"]) == hashlib.sha256(raw).digest()
    assert (row["channel"], row["outcome"]) == ("http-json", "accepted")
    assert row["source"].endswith("POST /v1/lab-results")
    await eventually(
        lambda: db.fetchval("SELECT count(*) = 1 FROM events WHERE event_id = $1", event_id),
        what="the event in the audit log",
    )
    with pytest.raises(
        asyncpg.InsufficientPrivilegeError, match="received_messages is append-only: DELETE"
    ):
        await db.execute("DELETE FROM received_messages")


async def test_rejected_message_is_kept_and_reaches_the_audit_log(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    raw = json.dumps({"subject_id": "X", "loinc_code": "718-7", "value": "high"}).encode()
    async with httpx.AsyncClient(base_url=services.ingest_url, headers=services.headers) as client:
        response = await client.post(
            "/v1/lab-results", content=raw, headers={"content-type": "application/json"}
        )
    assert response.status_code == 422

    row = await db.fetchrow(
        "SELECT * FROM received_messages WHERE raw = $1 ORDER BY received_at DESC LIMIT 1", raw
    )
    assert row["outcome"] == "rejected"
    assert "value" in row["reason"]
    assert "collected_at" in row["reason"]
    (owed,) = row["event_ids"]

    stored = await eventually(
        lambda: db.fetchval("SELECT payload_json FROM events WHERE event_id = $1", owed),
        what="the rejection in the rejected-input stream",
    )
    payload = json.loads(stored)
    # the audit log refers to the kept message; the raw stays in the receipt store only
    assert payload["receipt_id"] == str(row["receipt_id"])
    assert payload["raw_sha256"] == hashlib.sha256(raw).hexdigest()
    assert (payload["raw_size"], payload["channel"]) == (len(raw), "http-json")
    assert "raw_base64" not in payload
    assert "raw_text" not in payload
    assert payload["rejected_by"] == "vigil-ingest"
    assert payload["origin"] == "http /v1/lab-results"


async def test_unconvertible_unit_is_kept_and_raises_a_data_quality_issue(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    subject = f"DQ-{uuid.uuid4().hex[:8]}"
    body = {
        "subject_id": subject,
        "loinc_code": "718-7",
        "value": "55",
        "unit": "%",
        "collected_at": "2026-11-01T08:00:00+00:00",
        "source_message_id": "DQ-1",
    }
    async with httpx.AsyncClient(base_url=services.ingest_url, headers=services.headers) as client:
        response = await client.post("/v1/lab-results", json=body)
    assert response.status_code == 202
    lab_id, issue_id = (uuid.UUID(i) for i in response.json()["event_ids"])

    issue = await eventually(
        lambda: db.fetchval("SELECT payload_json FROM events WHERE event_id = $1", issue_id),
        what="the data-quality issue in the audit log",
    )
    assert json.loads(issue)["related_event_id"] == str(lab_id)
    lab = json.loads(
        await eventually(
            lambda: db.fetchval("SELECT payload_json FROM events WHERE event_id = $1", lab_id),
            what="the result in the audit log",
        )
    )
    assert (lab["value"], lab["unit"], lab["canonical_value"]) == (55, "%", None)


async def test_qualitative_and_unmapped_results_are_stored(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    subject = f"QL-{uuid.uuid4().hex[:8]}"
    common = {"subject_id": subject, "collected_at": "2026-11-01T08:00:00+00:00"}
    body = [
        {**common, "loinc_code": "7918-6", "value_text": "REACTIVE", "source_message_id": "Q1"},
        {
            **common,
            "loinc_code": "2345-7",
            "value": 5.4,
            "unit": "mmol/L",
            "source_message_id": "Q2",
        },
    ]
    async with httpx.AsyncClient(base_url=services.ingest_url, headers=services.headers) as client:
        response = await client.post("/v1/lab-results", json=body)
        refused = await client.post(
            "/v1/lab-results", json={**common, "value": 5, "source_message_id": "Q3"}
        )
    assert response.status_code == 202
    assert refused.status_code == 422
    hiv_id, glucose_id = (uuid.UUID(i) for i in response.json()["event_ids"])
    hiv = json.loads(
        await eventually(
            lambda: db.fetchval("SELECT payload_json FROM events WHERE event_id = $1", hiv_id),
            what="the HIV result",
        )
    )
    assert (hiv["qualitative"], hiv["value_text"]) == ("positive", "REACTIVE")
    glucose = json.loads(
        await eventually(
            lambda: db.fetchval("SELECT payload_json FROM events WHERE event_id = $1", glucose_id),
            what="the glucose result",
        )
    )
    assert glucose["unmapped"] is True
