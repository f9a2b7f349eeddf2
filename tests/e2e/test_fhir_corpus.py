"""FHIR as EHRs and laboratories write it (issue 14): every file of tests/data/fhir/ sent
through a real HTTP socket to the running services, answered and recorded as
tests/data/fhir/expected.yaml says."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from shared.yaml_files import load_yaml
from tests.support.results import new_subject_id
from tests.support.services import RunningServices
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).parents[1] / "data" / "fhir"
EXPECTED: dict[str, dict[str, Any]] = load_yaml((CORPUS / "expected.yaml").read_text())
REPORTED = "org.vigil.lab_result.reported.v1"
SUPERSEDED = "org.vigil.lab_result.superseded.v1"


def test_every_file_of_the_corpus_has_its_expectation() -> None:
    files = {p.name for p in CORPUS.iterdir() if p.name != "expected.yaml"}
    assert files == set(EXPECTED)


def filled(name: str, subject: str) -> bytes:
    text = (CORPUS / name).read_text()
    for placeholder, value in (
        ("{{SUBJECT}}", subject),
        ("{{UNIQUE12}}", uuid.uuid4().hex[:12]),
        ("{{UNIQUE}}", uuid.uuid4().hex[:8]),
    ):
        text = text.replace(placeholder, value)
    return text.encode()


def target(name: str, body: bytes, expected: dict[str, Any]) -> str:
    if "path" in expected:
        return str(expected["path"])
    kind = json.loads(body)["resourceType"]
    return "/fhir/r4" if kind == "Bundle" else f"/fhir/r4/{kind}"


def expressions(answer: dict[str, Any]) -> set[str]:
    """Every issue expression of the answer, its own and its entries'."""
    outcomes = [answer] + [
        e["response"]["outcome"] for e in answer.get("entry", []) if "outcome" in e["response"]
    ]
    return {x for o in outcomes for i in o.get("issue", []) for x in i.get("expression", [])}


def check_locations(body: bytes, answer: httpx.Response) -> None:
    """Each 201 names the resource type as sent, a logical id and version 1."""
    if answer.status_code == 201:
        kind = json.loads(body)["resourceType"]
        created = [(kind, answer.headers["location"])]
    elif answer.status_code == 200 and "entry" in answer.json():
        sent = json.loads(body)["entry"]
        created = [
            (sent[n]["resource"]["resourceType"], entry["response"]["location"])
            for n, entry in enumerate(answer.json()["entry"])
            if entry["response"]["status"] == "201 Created"
        ]
    else:
        return
    for kind, location in created:
        named, event_id, history, version = location.split("/")
        assert (named, history, version) == (kind, "_history", "1"), location
        uuid.UUID(event_id)


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_fhir_corpus(name: str, services: RunningServices, db: asyncpg.Connection) -> None:
    expected = EXPECTED[name]
    subject = new_subject_id("FC")
    body = filled(name, subject)
    content_type = expected.get("content_type", "application/fhir+json")
    async with httpx.AsyncClient(base_url=services.ingest_url, timeout=30) as client:
        answer = await client.post(
            target(name, body, expected),
            content=body,
            headers={**services.headers, "content-type": content_type},
        )
    assert answer.status_code == expected["status"], answer.text
    document = answer.json()
    if "entries" in expected:
        assert [e["response"]["status"] for e in document["entry"]] == expected["entries"]
    assert set(expected.get("expressions", [])) <= expressions(document), answer.text
    if answer.status_code >= 400 or any(
        not e["response"]["status"].startswith("2") for e in document.get("entry", [])
    ):
        assert subject not in answer.text, "an answer quoted the subject id"
    check_locations(body, answer)
    if "kept" in expected:
        kept = await db.fetchval("SELECT outcome FROM received_messages WHERE raw = $1", body)
        assert kept == expected["kept"]
    recorded = sorted(
        (code, status, datetime.fromisoformat(at))
        for code, status, at in expected.get("recorded", [])
    )
    if recorded:
        rows = await eventually(
            lambda: _results_when(db, subject, len(recorded)),
            timeout=60,
            what=f"{len(recorded)} results of {name} in the audit log",
        )
        assert rows == recorded
    if "superseded" in expected:
        count = await db.fetchval(
            "SELECT count(*) FROM events WHERE subject_id = $1 AND type = $2",
            subject,
            SUPERSEDED,
        )
        assert count == expected["superseded"]


async def _results_when(
    db: asyncpg.Connection, subject: str, count: int
) -> list[tuple[str, str, datetime]] | None:
    rows = await db.fetch(
        "SELECT payload->>'loinc_code' AS code, payload->>'result_status' AS status, "
        "payload->>'collected_at' AS at FROM events WHERE subject_id = $1 AND type = $2",
        subject,
        REPORTED,
    )
    if len(rows) < count:
        return None
    return sorted((r["code"], r["status"], datetime.fromisoformat(r["at"])) for r in rows)
