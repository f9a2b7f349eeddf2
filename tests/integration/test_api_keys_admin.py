"""Keeping the API keys: `vigil keys` as an operator runs it, the audit trail of who could
write when, and the development key `vigil dev` issues and reuses."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import pytest

from services.ingest.domain.api_keys import parse_key
from tests.support.api_keys import vigil_keys
from tests.support.components import as_service_role
from vigil.devstack.dev_key import ensure_dev_key

pytestmark = pytest.mark.integration


async def stream(dsn: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetch(
            "SELECT type, payload_json FROM events WHERE stream_id = 'api-keys' ORDER BY position"
        )
    finally:
        await connection.close()


async def test_each_key_change_is_in_the_audit_log_with_its_scope_and_never_its_secret(
    fresh_dsn: str,
) -> None:
    service = as_service_role(fresh_dsn)
    created = await vigil_keys(
        "create", "--source", "pkuph-lab", "--study", "NCT05262686", "--site", "PKUPH-01",
        "--expires-in-days", "30", admin_dsn=fresh_dsn, service_dsn=service,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    key = parse_key(created.stdout.strip())
    assert key is not None
    assert "shown once" in created.stderr
    rotated = await vigil_keys("rotate", key.key_id, "--grace-hours", "1",
                               admin_dsn=fresh_dsn, service_dsn=service)  # fmt: skip
    new = parse_key(rotated.stdout.strip())
    assert new is not None
    revoked = await vigil_keys("revoke", new.key_id, "--reason", "test",
                               admin_dsn=fresh_dsn, service_dsn=service)  # fmt: skip
    assert revoked.returncode == 0, revoked.stderr
    again = await vigil_keys("revoke", new.key_id, admin_dsn=fresh_dsn, service_dsn=service)

    events = await stream(fresh_dsn)
    assert [row["type"].split(".")[-2] for row in events] == [
        "created",
        "created",
        "rotated",
        "revoked",
    ]
    first, second, rotation, revocation = (json.loads(row["payload_json"]) for row in events)
    assert (first["source"], first["studies"], first["sites"]) == (
        "pkuph-lab",
        ["NCT05262686"],
        ["PKUPH-01"],
    )
    assert first["expires_at"] is not None
    assert (second["rotated_from"], second["sites"]) == (key.key_id, ["PKUPH-01"])
    assert rotation["replaced_by"] == new.key_id
    assert revocation["reason"] == "test"
    assert "database role" in first["issued_by"]
    text = str(events)
    assert key.secret not in text
    assert new.secret not in text
    assert again.returncode == 1
    assert "already revoked" in again.stderr


async def test_the_list_shows_scope_and_state_of_every_key_and_no_secret(fresh_dsn: str) -> None:
    service = as_service_role(fresh_dsn)
    created = await vigil_keys(
        "create", "--source", "edc", "--study", "NCT05262686", "--may-amend-others",
        admin_dsn=fresh_dsn, service_dsn=service,
    )  # fmt: skip
    key = parse_key(created.stdout.strip())
    assert key is not None
    await vigil_keys("revoke", key.key_id, admin_dsn=fresh_dsn, service_dsn=service)

    listed = await vigil_keys("list", admin_dsn=fresh_dsn, service_dsn=service)

    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.strip().splitlines()
    assert header.split()[:3] == ["key", "id", "source"]
    assert row.split()[:6] == [key.key_id, "edc", "NCT05262686", "*", "yes", "revoked"]
    assert key.secret not in listed.stdout


async def test_an_unknown_key_id_or_source_name_is_refused_with_what_to_do(
    fresh_dsn: str,
) -> None:
    service = as_service_role(fresh_dsn)
    unknown = await vigil_keys(
        "revoke", "0123456789abcdef", admin_dsn=fresh_dsn, service_dsn=service
    )
    bad_source = await vigil_keys("create", "--source", "a lab", "--study", "NCT05262686",
                                  admin_dsn=fresh_dsn, service_dsn=service)  # fmt: skip
    assert unknown.returncode == 1
    assert "vigil keys list" in unknown.stderr
    assert bad_source.returncode == 2
    assert "--source" in bad_source.stderr


async def test_vigil_dev_issues_its_key_once_and_reuses_it_while_it_is_valid(
    fresh_dsn: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "state" / "dev-api-key"
    studies = ("NCT05262686",)

    first, issued = await asyncio.to_thread(ensure_dev_key, fresh_dsn, key_file, studies)
    again, reissued = await asyncio.to_thread(ensure_dev_key, fresh_dsn, key_file, studies)

    assert issued
    assert not reissued
    assert again == first
    assert key_file.stat().st_mode & 0o777 == 0o600
    presented = parse_key(first)
    assert presented is not None
    service = as_service_role(fresh_dsn)
    await vigil_keys("revoke", presented.key_id, admin_dsn=fresh_dsn, service_dsn=service)
    replaced, reissued_now = await asyncio.to_thread(ensure_dev_key, fresh_dsn, key_file, studies)
    assert reissued_now
    assert replaced != first
    assert key_file.read_text().strip() == replaced
    wider, widened = await asyncio.to_thread(
        ensure_dev_key, fresh_dsn, key_file, ("NCT05262686", "NCT00000001")
    )
    assert widened  # a new study folder: a key that covers it
    connection = await asyncpg.connect(fresh_dsn)
    try:
        row = await connection.fetchrow(
            "SELECT source, studies, may_amend_others FROM api_keys WHERE key_id = $1",
            wider.split("_")[1],
        )
    finally:
        await connection.close()
    assert (row["source"], sorted(row["studies"]), row["may_amend_others"]) == (
        "dev",
        ["NCT00000001", "NCT05262686"],
        True,
    )
