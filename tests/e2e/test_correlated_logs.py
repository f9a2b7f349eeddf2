"""One result followed across the three services' JSON logs by its correlation id."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_haemoglobin_alert import enrolment, haemoglobin, new_subject_id
from tests.support.services import RunningServices
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


def log_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a service's log (other output, such as tracebacks, is skipped)."""
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


def events_with(services: RunningServices, service: str, correlation_id: str) -> set[str]:
    return {
        line["event"]
        for line in log_lines(services.log_dir / f"{service}.log")
        if line.get("correlation_id") == correlation_id
    }


async def test_a_result_can_be_followed_from_ingest_through_rules_to_the_notifier(
    services: RunningServices,
) -> None:
    subject = new_subject_id()
    correlation_id = str(uuid.uuid4())
    async with httpx.AsyncClient(
        base_url=services.ingest_url, headers=services.headers, timeout=30
    ) as client:
        enrolled = await client.post("/v1/subjects", json=enrolment(subject))
        assert enrolled.status_code == 202, enrolled.text
        response = await client.post(
            "/v1/lab-results",
            json=haemoglobin(subject, "7.9"),
            headers={"X-Correlation-Id": correlation_id},
        )
    assert response.status_code == 202, response.text
    assert response.json()["correlation_id"] == correlation_id

    async def delivered() -> set[str]:
        found = events_with(services, "notifier", correlation_id)
        return found if "notifier.delivery_sent" in found else set()

    notifier = await eventually(delivered, timeout=60, what="a delivery logged with the id")

    assert "ingest.accepted" in events_with(services, "ingest", correlation_id)
    assert "rules.signal_raised" in events_with(services, "safety_rules", correlation_id)
    assert "notifier.signal_received" in notifier
    for line in log_lines(services.log_dir / "ingest.log"):
        if line.get("correlation_id") == correlation_id:
            assert line["service"] == "ingest"
            assert line["level"] in ("info", "warning", "error")
