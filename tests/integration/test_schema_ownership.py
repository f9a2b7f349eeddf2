"""The audit log's tables and refusing triggers belong to a NOLOGIN owner role that the
service role cannot act as, and `vigil db upgrade` refuses to run as the service role."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from shared.db.migrate import upgrade
from shared.db.ownership import MigrationRefused
from shared.eventstore import NewEvent, append
from tests.integration.test_event_store import result
from tests.support.components import SERVICE_PASSWORD, SERVICE_ROLE, as_service_role

pytestmark = pytest.mark.integration

OWNER = "vigil_owner"

# Objects of the public schema not owned by the owner role (extensions excluded).
NOT_OWNED = """
SELECT c.relname AS name FROM pg_class c
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
  AND pg_get_userbyid(c.relowner) <> $1
UNION ALL
SELECT p.proname FROM pg_proc p
WHERE p.pronamespace = 'public'::regnamespace AND pg_get_userbyid(p.proowner) <> $1
"""


def as_role(dsn: str, role: str) -> str:
    """The same database reached as ``role`` (the test cluster trusts loopback)."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}"))


@pytest.fixture
async def service(fresh_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """The service role's connection to a database holding one event."""
    admin = await asyncpg.connect(fresh_dsn)
    async with admin.transaction():
        await append(admin, [NewEvent(result("S1", "12.0"))])
    await admin.close()
    connection = await asyncpg.connect(as_service_role(fresh_dsn))
    yield connection
    await connection.close()


NOT_OWNER_OF_EVENTS = "must be owner of table events"
NOT_GRANTED_ON_EVENTS = "permission denied for table events"


@pytest.mark.parametrize(
    ("statement", "refusal"),
    [
        ("ALTER TABLE events DISABLE TRIGGER ALL", NOT_OWNER_OF_EVENTS),
        ("ALTER TABLE events DISABLE TRIGGER events_refuse_update_delete", NOT_OWNER_OF_EVENTS),
        ("DROP TRIGGER events_refuse_update_delete ON events", "must be owner of relation events"),
        ("DROP TRIGGER events_refuse_truncate ON events", "must be owner of relation events"),
        (f"ALTER TABLE events OWNER TO {SERVICE_ROLE}", NOT_OWNER_OF_EVENTS),
        (
            "ALTER FUNCTION vigil_refuse_change() OWNER TO CURRENT_USER",
            "must be owner of function vigil_refuse_change",
        ),
        (
            "CREATE OR REPLACE FUNCTION vigil_refuse_change() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN RETURN NEW; END $$",
            "permission denied for schema public",
        ),
        ("DROP TABLE events", NOT_OWNER_OF_EVENTS),
        ("TRUNCATE events", NOT_GRANTED_ON_EVENTS),
        ("UPDATE events SET source = 'x'", NOT_GRANTED_ON_EVENTS),
        ("DELETE FROM events", NOT_GRANTED_ON_EVENTS),
        (
            "ALTER TABLE received_messages DISABLE TRIGGER ALL",
            "must be owner of table received_messages",
        ),
        (
            "ALTER TABLE audit_checkpoints DISABLE TRIGGER ALL",
            "must be owner of table audit_checkpoints",
        ),
        (f"SET ROLE {OWNER}", f'permission denied to set role "{OWNER}"'),
        (
            "SET session_replication_role = replica",
            'permission denied to set parameter "session_replication_role"',
        ),
    ],
)
async def test_the_service_role_cannot_disable_drop_or_bypass_the_audit_logs_guards(
    service: asyncpg.Connection, statement: str, refusal: str
) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match=refusal):
        await service.execute(statement)
    assert await service.fetchval("SELECT count(*) FROM events") == 1


async def test_every_table_and_trigger_function_belongs_to_the_nologin_owner(
    db: asyncpg.Connection,
) -> None:
    assert await db.fetch(NOT_OWNED, OWNER) == []
    owner = await db.fetchrow(
        "SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = $1", OWNER
    )
    assert dict(owner) == {"rolcanlogin": False, "rolsuper": False}
    assert not await db.fetchval("SELECT pg_has_role($1, $2, 'MEMBER')", SERVICE_ROLE, OWNER)


async def test_upgrade_gives_an_existing_databases_objects_to_the_owner(fresh_dsn: str) -> None:
    connection = await asyncpg.connect(fresh_dsn)
    try:
        # as a database migrated before the owner role existed: everything the admin's
        for row in await connection.fetch(
            "SELECT c.oid::regclass::text AS name FROM pg_class c "
            "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'"
        ):
            await connection.execute(f"ALTER TABLE {row['name']} OWNER TO CURRENT_USER")
        await connection.execute("ALTER FUNCTION vigil_refuse_change() OWNER TO CURRENT_USER")
        assert await connection.fetch(NOT_OWNED, OWNER) != []

        assert await upgrade(fresh_dsn, service_role=SERVICE_ROLE) == []

        assert await connection.fetch(NOT_OWNED, OWNER) == []
    finally:
        await connection.close()
    service = await asyncpg.connect(as_service_role(fresh_dsn))
    try:  # the grants survived the change of owner
        async with service.transaction():
            await append(service, [NewEvent(result("S2", "11.0"))])
        with pytest.raises(
            asyncpg.InsufficientPrivilegeError, match="must be owner of table events"
        ):
            await service.execute("ALTER TABLE events DISABLE TRIGGER ALL")
    finally:
        await service.close()


async def test_upgrade_as_the_service_role_is_refused_with_the_fix(fresh_dsn: str) -> None:
    with pytest.raises(MigrationRefused, match="VIGIL_DATABASE_ADMIN_URL"):
        await upgrade(as_service_role(fresh_dsn), service_role=SERVICE_ROLE)


async def test_vigil_db_upgrade_with_only_the_service_dsn_refuses_and_says_how(
    fresh_dsn: str,
) -> None:
    env = {
        "VIGIL_DATABASE_URL": as_service_role(fresh_dsn),
        "VIGIL_DATABASE_SERVICE_ROLE": SERVICE_ROLE,
        "PATH": "/usr/bin:/bin",
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "vigil", "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "service role 'vigil_app'" in done.stderr
    assert "set VIGIL_DATABASE_ADMIN_URL" in done.stderr
    assert SERVICE_PASSWORD not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


async def test_upgrade_as_a_role_that_cannot_act_as_the_owner_is_refused(
    db: asyncpg.Connection, fresh_dsn: str
) -> None:
    nobody = f"nobody_{uuid.uuid4().hex[:8]}"
    await db.execute(f"CREATE ROLE {nobody} LOGIN")
    try:
        with pytest.raises(MigrationRefused, match=f"'{nobody}'.*may not act as the owner"):
            await upgrade(as_role(fresh_dsn, nobody), service_role=SERVICE_ROLE)
    finally:
        await db.execute(f"DROP ROLE {nobody}")


async def test_upgrade_refuses_a_service_role_that_could_act_as_the_owner(
    db: asyncpg.Connection, fresh_dsn: str
) -> None:
    await db.execute(f"GRANT {OWNER} TO {SERVICE_ROLE}")
    try:
        with pytest.raises(MigrationRefused, match=f"REVOKE {OWNER} FROM {SERVICE_ROLE}"):
            await upgrade(fresh_dsn, service_role=SERVICE_ROLE)
    finally:
        await db.execute(f"REVOKE {OWNER} FROM {SERVICE_ROLE}")


async def test_an_administrator_with_createrole_migrates_without_being_a_superuser(
    db: asyncpg.Connection, postgres_dsn: str
) -> None:
    admin, database = f"admin_{uuid.uuid4().hex[:8]}", f"test_{uuid.uuid4().hex[:12]}"
    await db.execute(f"CREATE ROLE {admin} LOGIN CREATEROLE")
    await db.execute(f"CREATE DATABASE {database} OWNER {admin}")
    dsn = as_role(postgres_dsn.rsplit("/", 1)[0] + f"/{database}", admin)
    try:
        applied = await upgrade(dsn, service_role=SERVICE_ROLE)
        assert applied
        connection = await asyncpg.connect(dsn)
        try:
            assert await connection.fetch(NOT_OWNED, OWNER) == []
            assert await connection.fetchval(
                "SELECT has_table_privilege($1, 'events', 'INSERT')", SERVICE_ROLE
            )
        finally:
            await connection.close()
    finally:
        await db.execute(f"DROP DATABASE {database} WITH (FORCE)")
        await db.execute(f"REVOKE {OWNER} FROM {admin}")
        await db.execute(f"DROP OWNED BY {admin}")
        await db.execute(f"DROP ROLE {admin}")
