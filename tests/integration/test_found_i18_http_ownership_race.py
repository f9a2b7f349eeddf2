"""Checks that held when issue 18's group commit was attacked from outside:
two sources (two API keys) racing over HTTP for the same subjects and the same
observations, many requests at once; the database must agree with the answers."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support import components
from tests.support.api_keys import issue_api_key
from tests.support.mail import MailCatcher
from tests.support.mllp import bursting_ingest, kept_and_owed
from tests.support.results import haemoglobin

pytestmark = pytest.mark.integration


def enrol(subject: str, site: str, tag: str) -> dict[str, object]:
    return {
        "subject_id": subject,
        "site_id": site,
        "sex": "F",
        "birth_date": "1980-01-01",
        "day0": "2026-01-01",
        "weight_kg": 60,
    }


async def test_two_sources_racing_for_subjects_and_observations(
    tmp_path: Path,
    postgres_dsn: str,
    kafka_bootstrap: str,
    smtp_server: tuple[int, MailCatcher],
) -> None:
    dsn = await components.create_database(postgres_dsn, "i18http")
    key_a = await issue_api_key(dsn, source="lab-a")
    key_b = await issue_api_key(dsn, source="lab-b")
    rng = random.Random(7)
    subjects = [f"R-{n:02d}" for n in range(12)]
    plan: list[tuple[str, str, object]] = []  # (who, path, body)
    for subject in subjects:
        for _ in range(3):
            plan.append(("a", "/v1/subjects", enrol(subject, "PKUPH-01", "a")))
            plan.append(("b", "/v1/subjects", enrol(subject, "PKUPH-02", "b")))
            plan.append(
                (
                    "a",
                    "/v1/lab-results",
                    haemoglobin(subject, "10.1", source_message_id=f"OBS-{subject}"),
                )
            )
            plan.append(
                (
                    "b",
                    "/v1/lab-results",
                    haemoglobin(subject, "10.2", source_message_id=f"OBS-{subject}"),
                )
            )
    # lists of several patients from each source
    for n in range(6):
        chosen = rng.sample(subjects, 3)
        plan.append(
            (
                "a",
                "/v1/lab-results",
                [haemoglobin(s, "12.5", source_message_id=f"LIST-{s}-{n}") for s in chosen],
            )
        )
        plan.append(("b", "/v1/subjects", [enrol(s, "PKUPH-03", "b") for s in chosen]))
    rng.shuffle(plan)

    answers: list[tuple[str, str, object, int, str]] = []
    with bursting_ingest(
        tmp_path / "ingest",
        admin_dsn=dsn,
        kafka_bootstrap=kafka_bootstrap,
        smtp_port=smtp_server[0],
    ) as ingest:
        async with httpx.AsyncClient(
            base_url=ingest.url, timeout=60, limits=httpx.Limits(max_connections=200)
        ) as client:

            async def send(who: str, path: str, body: object) -> None:
                key = key_a if who == "a" else key_b
                response = await client.post(path, json=body, headers=key.headers)
                answers.append((who, path, body, response.status_code, response.text))

            await asyncio.gather(*(send(*item) for item in plan))

    statuses = sorted({status for *_, status, _ in answers})
    assert set(statuses) <= {202, 403}, [a for a in answers if a[3] not in (202, 403)][:3]

    connection = await asyncpg.connect(dsn)
    try:
        owners = {
            row["subject_id"]: row["owner_source"]
            for row in await connection.fetch(
                "SELECT subject_id, owner_source FROM ingest_subject_owners"
            )
        }
        record_owners = {
            row["identity"]: row["owner_source"]
            for row in await connection.fetch(
                "SELECT identity, owner_source FROM ingest_record_owners"
            )
        }
        kept, outbox = await kept_and_owed(connection)
    finally:
        await connection.close()

    source = {"a": "lab-a", "b": "lab-b"}
    # every answer: the database agrees
    for who, path, body, status, text in answers:
        items: list[dict[str, Any]] = body if isinstance(body, list) else [body]  # type: ignore[list-item]
        if path == "/v1/subjects":
            allowed = all(owners.get(i["subject_id"]) == source[who] for i in items)
        else:
            allowed = all(
                any(
                    k.startswith(f"{i['source_message_id']}|") and v == source[who]
                    for k, v in record_owners.items()
                )
                for i in items
            )
        assert allowed == (status == 202), (who, path, body, status, text, owners, record_owners)

    # receipts: one per answer, accepted for 202 and rejected for 403, events owed
    accepted = [r for r in kept if r["outcome"] == "accepted"]
    rejected = [r for r in kept if r["outcome"] == "rejected"]
    assert len(accepted) == sum(1 for a in answers if a[3] == 202)
    assert len(rejected) == sum(1 for a in answers if a[3] == 403)
    for row in accepted:
        assert row["event_ids"], row
        assert set(row["event_ids"]) <= outbox, row
    # the first accepted enrolment of each subject (arrival order) is its owner's
    for subject in subjects:
        first = next(
            (
                r["principal_source"]
                for r in accepted
                if '"site_id"' in r["body"] and f'"{subject}"' in r["body"]
            ),
            None,
        )
        assert first == owners.get(subject), (subject, first, owners.get(subject))
    await components.drop_database(postgres_dsn, dsn)
