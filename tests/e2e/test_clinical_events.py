"""Adverse events, concomitant medications and study-drug administrations over JSON."""

from __future__ import annotations

import json
import uuid

import asyncpg
import httpx
import pytest

from tests.support.services import RunningServices
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


async def stored_payload(db: asyncpg.Connection, event_id: str) -> dict[str, object]:
    text = await eventually(
        lambda: db.fetchval(
            "SELECT payload_json FROM events WHERE event_id = $1", uuid.UUID(event_id)
        ),
        what=f"event {event_id} in the audit log",
    )
    payload: dict[str, object] = json.loads(text)
    return payload


async def test_serious_adverse_event_is_recorded(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    subject = f"AE-{uuid.uuid4().hex[:8]}"
    body = {
        "subject_id": subject,
        "ae_id": "AE-001",
        "term": "Pneumonia",
        "meddra_code": "10035664",
        "system_organ_class": "Infections and infestations",
        "system_organ_class_code": "10021881",
        "onset": "2026-10-02T00:00:00+08:00",
        "serious": True,
        "seriousness_criteria": ["hospitalisation"],
        "ctcae_grade": 3,
        "outcome": "recovering",
        "relatedness": "possibly-related",
        "action_taken": "dose-interrupted",
        "source_message_id": "EDC-AE-001-v1",
    }
    async with httpx.AsyncClient(base_url=services.ingest_url, headers=services.headers) as client:
        response = await client.post("/v1/adverse-events", json=body)
        inconsistent = await client.post(
            "/v1/adverse-events", json={**body, "serious": False, "source_message_id": "x"}
        )
    assert response.status_code == 202, response.text
    payload = await stored_payload(db, response.json()["event_ids"][0])
    assert payload["seriousness_criteria"] == ["hospitalisation"]
    assert payload["system_organ_class_code"] == "10021881"
    assert inconsistent.status_code == 422
    assert "seriousness_criteria" in inconsistent.text


async def test_medications_are_recorded_by_category(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    subject = f"CM-{uuid.uuid4().hex[:8]}"
    common = {"subject_id": subject, "start": "2026-10-01T08:00:00+08:00"}
    async with httpx.AsyncClient(base_url=services.ingest_url, headers=services.headers) as client:
        conmed = await client.post(
            "/v1/concomitant-medications",
            json={
                **common,
                "medication_id": "CM1",
                "drug": "prednisone",
                "dose": 15,
                "dose_unit": "mg",
                "route": "oral",
                "frequency": "QD",
                "source_message_id": "CM1",
            },
        )
        dosing = await client.post(
            "/v1/study-drug-administrations",
            json=[
                {
                    **common,
                    "medication_id": "SD1",
                    "drug": "belimumab",
                    "dose": 10,
                    "dose_unit": "mg/kg",
                    "route": "intravenous",
                    "frequency": "Q4W",
                    "source_message_id": "SD1",
                }
            ],
        )
        wrong = await client.post(
            "/v1/study-drug-administrations",
            json={
                **common,
                "medication_id": "SD2",
                "drug": "x",
                "dose": 1,
                "dose_unit": "mg",
                "route": "oral",
                "category": "concomitant",
                "source_message_id": "SD2",
            },
        )
    assert conmed.status_code == dosing.status_code == 202
    assert (await stored_payload(db, conmed.json()["event_ids"][0]))["category"] == "concomitant"
    assert (await stored_payload(db, dosing.json()["event_ids"][0]))["category"] == "study-drug"
    assert wrong.status_code == 422
