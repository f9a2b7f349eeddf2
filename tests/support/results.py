"""Lab results and subject ids as the JSON API takes them, for tests that send them."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg


def new_subject_id(prefix: str = "FB") -> str:
    """A subject id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def haemoglobin(subject_id: str, value: str, unit: str = "g/dL", **extra: Any) -> dict[str, Any]:
    """A haemoglobin result (LOINC 718-7) with the laboratory's range 12-16 g/dL."""
    return {
        "subject_id": subject_id,
        "loinc_code": "718-7",
        "value": value,
        "unit": unit,
        "reference_low": "12.0",
        "reference_high": "16.0",
        "collected_at": "2026-11-20T08:30:00+08:00",
        "source_message_id": f"LAB-{uuid.uuid4().hex[:12]}",
        **extra,
    }


def enrolment(subject_id: str, site_id: str = "PKUPH-01") -> dict[str, Any]:
    """An enrolment as ``POST /v1/subjects`` takes it."""
    return {"subject_id": subject_id, "site_id": site_id, "sex": "F", "birth_date": "1980-05-05"}


def concomitant_medication(subject_id: str, **extra: Any) -> dict[str, Any]:
    """Prednisone 20 mg QD by mouth (20 mg/day: above the study's 10 mg/day steroid
    threshold), as ``POST /v1/concomitant-medications`` takes it; ``extra`` overrides."""
    return {
        "subject_id": subject_id,
        "medication_id": f"CM-{uuid.uuid4().hex[:8]}",
        "drug": "prednisone",
        "dose": "20",
        "dose_unit": "mg",
        "route": "oral",
        "frequency": "QD",
        "start": "2026-11-18T08:00:00+08:00",
        "source_message_id": f"CM-{uuid.uuid4().hex[:8]}",
        **extra,
    }


async def stored_payloads(db: asyncpg.Connection, subject: str, kind: str) -> list[str]:
    """The stored payloads of one subject's events of one type, as JSON text."""
    rows = await db.fetch(
        "SELECT payload::text AS p FROM events WHERE subject_id = $1 AND type = $2",
        subject,
        kind,
    )
    return [row["p"] for row in rows]
