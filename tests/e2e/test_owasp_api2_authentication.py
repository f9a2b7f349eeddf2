"""OWASP API2:2023, broken authentication: every write needs a valid API key; keys are
kept only as hashes, rotate with a grace period, stop when revoked; with no key at all
ingest refuses and says how to make one; MLLP accepts nothing anonymous in production."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from services.ingest.domain.api_keys import parse_key
from tests.e2e.test_haemoglobin_alert import enrolment, haemoglobin
from tests.support.api_keys import issue_api_key, vigil_keys
from tests.support.mail import MailCatcher
from tests.support.services import PrivateIngest, RunningServices, private_ingest
from tests.support.waiting import eventually
from vigil.devstack.postgres import find_bindir

pytestmark = pytest.mark.integration
FHIR = {"content-type": "application/fhir+json"}
HOW_TO = "vigil keys create --source NAME --study STUDY"


async def post(
    url: str, path: str, body: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await client.post(path, json=body, headers=headers or {})


def subject() -> str:
    return f"AU-{uuid.uuid4().hex[:10]}"


async def last_refusal(db: asyncpg.Connection, path: str) -> asyncpg.Record:
    row = await db.fetchrow(
        "SELECT * FROM received_messages WHERE outcome = 'rejected' AND source LIKE $1 "
        "ORDER BY received_at DESC LIMIT 1",
        f"% POST {path}",
    )
    assert row is not None
    return row


async def test_a_write_without_a_key_gets_401_with_a_bearer_challenge_and_is_kept(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    body = haemoglobin(subject(), "8.0")
    response = await post(services.ingest_url, "/v1/lab-results", body)

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == 'Bearer realm="vigil-ingest"'
    assert response.json()["code"] == "missing-credential"
    row = await last_refusal(db, "/v1/lab-results")
    assert row["principal_source"] is None
    assert "missing-credential" in row["reason"]
    assert bytes(row["raw"]) == httpx.Request("POST", "/", json=body).content


async def test_a_fhir_write_without_a_key_gets_an_operation_outcome(
    services: RunningServices,
) -> None:
    async with httpx.AsyncClient(base_url=services.ingest_url, timeout=30) as client:
        response = await client.post("/fhir/r4/Observation", content=b"{}", headers=FHIR)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/fhir+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["issue"][0]["code"] == "login"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="},
        {"Authorization": "Bearer not-a-key"},
        {"X-API-Key": "vgk_0123456789abcdef_" + "A" * 43},
    ],
    ids=["another-scheme", "malformed", "unknown-key"],
)
async def test_a_malformed_or_unknown_key_gets_401(
    services: RunningServices, headers: dict[str, str]
) -> None:
    response = await post(services.ingest_url, "/v1/subjects", enrolment(subject()), headers)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_a_known_key_id_with_a_wrong_secret_gets_401_like_an_unknown_key(
    services: RunningServices, db: asyncpg.Connection
) -> None:
    genuine = parse_key(services.api_key.key)
    assert genuine is not None
    forged = f"vgk_{genuine.key_id}_{'B' * 43}"
    unknown = "vgk_fedcba9876543210_" + "B" * 43

    wrong = await post(services.ingest_url, "/v1/subjects", enrolment(subject()),
                       {"Authorization": f"Bearer {forged}"})  # fmt: skip
    assert (await last_refusal(db, "/v1/subjects"))["reason"].startswith("401 wrong-secret")
    nobody = await post(services.ingest_url, "/v1/subjects", enrolment(subject()),
                        {"Authorization": f"Bearer {unknown}"})  # fmt: skip

    assert wrong.status_code == nobody.status_code == 401
    assert wrong.json()["detail"] == nobody.json()["detail"]  # nothing told about key ids


async def test_the_key_may_come_in_an_x_api_key_header(services: RunningServices) -> None:
    response = await post(services.ingest_url, "/v1/subjects", enrolment(subject()),
                          {"X-API-Key": services.api_key.key})  # fmt: skip
    assert response.status_code == 202, response.text


async def test_a_revoked_key_stops_within_the_refresh_interval(
    services: RunningServices, postgres_dsn: str, service_dsn: str, db: asyncpg.Connection
) -> None:
    key = await issue_api_key(postgres_dsn, source=f"revoked-{uuid.uuid4().hex[:6]}")
    assert (
        await post(services.ingest_url, "/v1/subjects", enrolment(subject()), key.headers)
    ).status_code == 202

    revoked = await vigil_keys("revoke", key.key_id, "--reason", "laptop lost",
                               admin_dsn=postgres_dsn, service_dsn=service_dsn)  # fmt: skip
    assert revoked.returncode == 0, revoked.stderr

    async def refused() -> bool:
        response = await post(
            services.ingest_url, "/v1/subjects", enrolment(subject()), key.headers
        )
        return response.status_code == 401

    await eventually(refused, timeout=15, what="the revoked key refused")  # refresh: 2 s
    assert "revoked-key" in (await last_refusal(db, "/v1/subjects"))["reason"]
    event = await db.fetchrow(
        "SELECT payload FROM events WHERE stream_id = 'api-keys' AND payload->>'key_id' = $1 "
        "AND type = 'org.vigil.api_key.revoked.v1'",
        key.key_id,
    )
    assert event is not None


async def test_a_rotated_key_works_through_its_grace_period_and_not_after(
    services: RunningServices, postgres_dsn: str, service_dsn: str, db: asyncpg.Connection
) -> None:
    source = f"rotating-{uuid.uuid4().hex[:6]}"
    created = await vigil_keys("create", "--source", source, "--study", "NCT05262686",
                               admin_dsn=postgres_dsn, service_dsn=service_dsn)  # fmt: skip
    assert created.returncode == 0, created.stderr
    first = created.stdout.strip()
    first_id = first.split("_")[1]

    def bearer(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    async def status(key: str) -> int:
        response = await post(
            services.ingest_url, "/v1/subjects", enrolment(subject()), bearer(key)
        )
        return response.status_code

    graceful = await vigil_keys("rotate", first_id, "--grace-hours", "24",
                                admin_dsn=postgres_dsn, service_dsn=service_dsn)  # fmt: skip
    assert graceful.returncode == 0, graceful.stderr
    second = graceful.stdout.strip()
    assert second != first
    assert await status(second) == 202
    assert await status(first) == 202  # within its 24-hour grace

    at_once = await vigil_keys("rotate", second.split("_")[1], "--grace-hours", "0",
                               admin_dsn=postgres_dsn, service_dsn=service_dsn)  # fmt: skip
    assert at_once.returncode == 0, at_once.stderr
    third = at_once.stdout.strip()
    assert await status(third) == 202
    assert await status(second) == 401  # its grace was zero: ended at the rotation
    assert "expired-key" in (await last_refusal(db, "/v1/subjects"))["reason"]
    assert await status(first) == 202  # the first key's own grace still runs

    rotations = await db.fetch(
        "SELECT payload FROM events WHERE stream_id = 'api-keys' AND "
        "type = 'org.vigil.api_key.rotated.v1' AND payload->>'key_id' IN ($1, $2)",
        first_id,
        second.split("_")[1],
    )
    assert len(rotations) == 2


async def test_keys_are_stored_only_as_hashes_and_never_listed_or_logged(
    services: RunningServices, postgres_dsn: str, service_dsn: str, db: asyncpg.Connection
) -> None:
    source = f"hashed-{uuid.uuid4().hex[:6]}"
    created = await vigil_keys("create", "--source", source, "--study", "NCT05262686",
                               admin_dsn=postgres_dsn, service_dsn=service_dsn)  # fmt: skip
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    presented = parse_key(key)
    assert presented is not None
    used = await post(services.ingest_url, "/v1/subjects", enrolment(subject()),
                      {"Authorization": f"Bearer {key}"})  # fmt: skip
    assert used.status_code == 202

    dump = await asyncio.to_thread(
        subprocess.run,
        [str(find_bindir() / "pg_dump"), "--data-only", "--dbname", postgres_dsn],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    digest = hashlib.sha256(presented.secret.encode()).hexdigest()
    assert presented.secret not in dump.stdout
    assert dump.stdout.count(digest) == 1  # in api_keys, and not in the audit log
    stored = await db.fetchval(
        "SELECT secret_sha256 FROM api_keys WHERE key_id = $1", presented.key_id
    )
    assert bytes(stored).hex() == digest

    listed = await vigil_keys("list", admin_dsn=postgres_dsn, service_dsn=service_dsn)
    assert presented.key_id in listed.stdout
    assert presented.secret not in listed.stdout + listed.stderr
    logs = "".join(p.read_text() for p in services.log_dir.glob("*.log"))
    assert presented.secret not in logs
    created_event = await db.fetchval(
        "SELECT payload_json FROM events WHERE stream_id = 'api-keys' AND "
        "payload->>'key_id' = $1 AND type = 'org.vigil.api_key.created.v1'",
        presented.key_id,
    )
    assert source in created_event
    assert presented.secret not in created_event


async def test_the_key_file_option_writes_the_key_readable_by_its_owner_only(
    postgres_dsn: str, service_dsn: str, tmp_path: Path
) -> None:
    target = tmp_path / "lab.key"
    created = await vigil_keys("create", "--source", "file-lab", "--study", "NCT05262686",
                               "--output", str(target),
                               admin_dsn=postgres_dsn, service_dsn=service_dsn)  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert created.stdout == ""  # the key went to the file only
    assert target.stat().st_mode & 0o777 == 0o600
    assert parse_key(target.read_text().strip()) is not None


@pytest.fixture(scope="module")
def keyless_ingest(
    postgres_dsn: str,
    kafka_bootstrap: str,
    smtp_server: tuple[int, MailCatcher],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[PrivateIngest, str]]:
    """A production ingest whose database has no API key at all."""
    with private_ingest(
        server_dsn=postgres_dsn,
        kafka_bootstrap=kafka_bootstrap,
        smtp_port=smtp_server[0],
        log_dir=tmp_path_factory.mktemp("keyless"),
    ) as ingest:
        yield ingest, ingest.dsn


async def test_with_no_key_configured_writes_get_401_saying_how_to_create_one(
    keyless_ingest: tuple[PrivateIngest, str],
) -> None:
    ingest, dsn = keyless_ingest
    response = await post(ingest.url, "/v1/subjects", enrolment(subject()))
    async with httpx.AsyncClient(base_url=ingest.url, timeout=30) as client:
        fhir = await client.post("/fhir/r4", content=b"{}", headers=FHIR)

    assert response.status_code == fhir.status_code == 401
    assert HOW_TO in response.json()["detail"]
    assert response.json()["code"] == "no-keys-configured"
    assert HOW_TO in fhir.json()["issue"][0]["diagnostics"]
    connection = await asyncpg.connect(dsn)
    try:
        reasons = await connection.fetch(
            "SELECT reason FROM received_messages WHERE outcome = 'rejected' "
            "AND channel IN ('http-json', 'fhir')"
        )
    finally:
        await connection.close()
    assert len(reasons) == 2
    assert all("no-keys-configured" in row["reason"] for row in reasons)


async def test_a_key_created_while_ingest_runs_works_at_once(
    keyless_ingest: tuple[PrivateIngest, str],
) -> None:
    ingest, dsn = keyless_ingest
    key = await issue_api_key(dsn, source="late")
    response = await post(ingest.url, "/v1/subjects", enrolment(subject()), key.headers)
    assert response.status_code == 202, response.text
