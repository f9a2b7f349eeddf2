"""Lab results and subject ids as the JSON API takes them, for tests that send them."""

from __future__ import annotations

import uuid
from typing import Any


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
