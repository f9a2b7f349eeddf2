"""OWASP API5:2023, broken function-level authorization: managing keys is the schema
owner's function only. The services' role reads keys and cannot mint, widen or revive
one, nor give away who owns a record; ingest offers no route to keys and no write route
without a key."""

from __future__ import annotations

import uuid

import asyncpg
import httpx
import pytest

from tests.support.api_keys import issue_api_key, vigil_keys
from tests.support.services import RunningServices

pytestmark = pytest.mark.integration


async def test_the_service_role_reads_keys_but_cannot_create_change_or_delete_one(
    service_dsn: str, postgres_dsn: str
) -> None:
    key = await issue_api_key(postgres_dsn, source=f"fl-{uuid.uuid4().hex[:6]}")
    service = await asyncpg.connect(service_dsn)
    try:
        assert await service.fetchval("SELECT source FROM api_keys WHERE key_id = $1", key.key_id)
        attempts = [
            "INSERT INTO api_keys (key_id, source, studies, secret_sha256) "
            "VALUES ('00000000000000aa', 'rogue', '{NCT05262686}', sha256('x'))",
            f"UPDATE api_keys SET may_amend_others = true WHERE key_id = '{key.key_id}'",
            f"UPDATE api_keys SET expires_at = NULL WHERE key_id = '{key.key_id}'",
            f"DELETE FROM api_keys WHERE key_id = '{key.key_id}'",
            "TRUNCATE api_keys",
        ]
        for statement in attempts:
            with pytest.raises(
                asyncpg.InsufficientPrivilegeError, match="permission denied for table api_keys"
            ):
                await service.execute(statement)
    finally:
        await service.close()


async def test_the_service_role_cannot_give_away_or_forget_who_owns_a_record(
    service_dsn: str, services: RunningServices
) -> None:
    subject = f"FL-{uuid.uuid4().hex[:8]}"
    body = {"subject_id": subject, "site_id": "PKUPH-01", "sex": "F", "birth_date": "1980-01-01"}
    async with httpx.AsyncClient(base_url=services.ingest_url, headers=services.headers) as client:
        assert (await client.post("/v1/subjects", json=body)).status_code == 202
    service = await asyncpg.connect(service_dsn)
    try:
        for statement in (
            "UPDATE ingest_subject_owners SET owner_source = 'rogue' WHERE subject_id = $1",
            "DELETE FROM ingest_subject_owners WHERE subject_id = $1",
            "DELETE FROM ingest_record_owners WHERE subject_id = $1",
        ):
            with pytest.raises(
                asyncpg.InsufficientPrivilegeError,
                match=r"permission denied for table ingest_(subject|record)_owners",
            ):
                await service.execute(statement, subject)
    finally:
        await service.close()


async def test_even_the_owner_cannot_widen_a_key_revive_it_or_erase_it(
    postgres_dsn: str, service_dsn: str
) -> None:
    key = await issue_api_key(postgres_dsn, source=f"fl-{uuid.uuid4().hex[:6]}")
    revoked = await vigil_keys(
        "revoke", key.key_id, admin_dsn=postgres_dsn, service_dsn=service_dsn
    )
    assert revoked.returncode == 0, revoked.stderr
    owner = await asyncpg.connect(postgres_dsn)
    try:
        only_times_change = "only expires_at and revoked_at may change"
        for statement, refusal in (
            ("UPDATE api_keys SET studies = '{NCT05262686,NCT00000001}' WHERE key_id = $1",
             only_times_change),
            ("UPDATE api_keys SET may_amend_others = true WHERE key_id = $1", only_times_change),
            ("UPDATE api_keys SET revoked_at = NULL WHERE key_id = $1",
             "a revocation cannot be undone"),
            ("UPDATE api_keys SET secret_sha256 = sha256('known') WHERE key_id = $1",
             only_times_change),
            ("DELETE FROM api_keys WHERE key_id = $1", "api_keys is append-only: DELETE"),
        ):  # fmt: skip
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match=refusal):
                await owner.execute(statement, key.key_id)
    finally:
        await owner.close()


async def test_vigil_keys_refuses_without_the_schema_owners_dsn(
    postgres_dsn: str, service_dsn: str
) -> None:
    args = ("create", "--source", "rogue", "--study", "NCT05262686")
    unset = await vigil_keys(*args, admin_dsn=None, service_dsn=service_dsn)
    as_service = await vigil_keys(*args, admin_dsn=service_dsn, service_dsn=service_dsn)

    assert unset.returncode == 2
    assert "VIGIL_DATABASE_ADMIN_URL is not set" in unset.stderr
    assert as_service.returncode == 1
    assert "insufficient privilege" in as_service.stderr
    assert "vgk_" not in unset.stdout + as_service.stdout
    owner = await asyncpg.connect(postgres_dsn)
    try:
        assert await owner.fetchval("SELECT count(*) FROM api_keys WHERE source = 'rogue'") == 0
    finally:
        await owner.close()


async def test_no_write_route_of_ingest_is_open_and_none_manages_keys(
    services: RunningServices,
) -> None:
    async with httpx.AsyncClient(base_url=services.ingest_url, timeout=30) as client:
        paths = (await client.get("/openapi.json")).json()["paths"]
        writes = [path for path, operations in paths.items() if "post" in operations]
        assert len(writes) >= 9  # five JSON routes, three FHIR resources, the Bundle
        assert not [path for path in paths if "key" in path.lower()]
        for path in writes:
            assert (await client.post(path, json={})).status_code == 401, path
        updates = [path for path, operations in paths.items() if "put" in operations]
        for path in updates:  # FHIR update: /fhir/r4/<type>/{logical_id}
            response = await client.put(path.replace("{logical_id}", "x"), json={})
            assert response.status_code == 401, path
        for method in ("PUT", "PATCH", "DELETE"):
            response = await client.request(method, "/v1/subjects", json={})
            assert response.status_code == 401, method
