"""Who owns the schema: a NOLOGIN owner role, never the services, never by accident.

The triggers that refuse UPDATE, DELETE and TRUNCATE on the audit log protect it only from
roles that cannot disable them, and only a table's owner (or a member of the owner role,
or a superuser) can ``ALTER TABLE ... DISABLE TRIGGER``, drop a trigger or the table, or
give the table away. So the tables, their trigger functions and types belong to an owner
role (``VIGIL_DATABASE_OWNER_ROLE``, default ``vigil_owner``) that cannot log in;
``vigil db upgrade`` connects as an administrator, ``SET ROLE``s to the owner for the
migrations, and refuses to run as the service role or with a service role that could act
as the owner.
"""

from __future__ import annotations

import contextlib

import asyncpg

ADMIN_HINT = (
    "set VIGIL_DATABASE_ADMIN_URL to the DSN of a database administrator (a superuser, or a "
    "role with CREATEROLE that may SET ROLE to the owner role) and run `vigil db upgrade` again"
)


class MigrationRefused(RuntimeError):
    """`vigil db upgrade` would run as, or leave, a role that may change the audit log."""


async def quoted(connection: asyncpg.Connection, name: str) -> str:
    text: str = await connection.fetchval("SELECT quote_ident($1)", name)
    return text


async def check_migrating_role(
    connection: asyncpg.Connection, *, service_role: str, owner_role: str
) -> None:
    """Refuse to migrate as the service role, or as a role that cannot act as the owner."""
    me = await connection.fetchrow(
        "SELECT rolname, rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user"
    )
    if me["rolname"] == service_role:
        raise MigrationRefused(
            f"`vigil db upgrade` is connected as the service role {service_role!r} "
            "(VIGIL_DATABASE_URL), which may never own or change the schema: " + ADMIN_HINT
        )
    if me["rolsuper"] or me["rolcreaterole"]:
        return
    member = await connection.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1) "
        "AND pg_has_role(current_user, $1, 'MEMBER')",
        owner_role,
    )
    if not member:
        raise MigrationRefused(
            f"`vigil db upgrade` is connected as {me['rolname']!r}, which is not a superuser, "
            f"cannot create roles and may not act as the owner role {owner_role!r}: " + ADMIN_HINT
        )


async def ensure_owner_role(connection: asyncpg.Connection, owner_role: str) -> None:
    """Create the NOLOGIN owner role and let the connected administrator act as it."""
    owner = await quoted(connection, owner_role)
    if not await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", owner_role):
        # another database's upgrade in the same cluster may create it meanwhile
        with contextlib.suppress(asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
            await connection.execute(f"CREATE ROLE {owner} NOLOGIN")
    can_act = await connection.fetchval(
        "SELECT rolsuper OR pg_has_role(current_user, $1, 'MEMBER') "
        "FROM pg_roles WHERE rolname = current_user",
        owner_role,
    )
    try:
        if not can_act:
            await connection.execute(f"GRANT {owner} TO CURRENT_USER")
        await connection.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {owner}")
    except asyncpg.InsufficientPrivilegeError as error:
        raise MigrationRefused(
            f"cannot prepare the owner role {owner_role!r}: {error.args[0]}; " + ADMIN_HINT
        ) from None


# Every object of the public schema that an extension does not own, with the statement
# that gives it away; a table's own sequences and row type follow the table.
_FOREIGN_OWNED = """
WITH owner AS (SELECT oid FROM pg_roles WHERE rolname = $1)
SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                      WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE'
                      WHEN 'c' THEN 'TYPE' ELSE 'TABLE' END AS kind,
       CASE c.relkind WHEN 'c' THEN c.reltype::regtype::text
                      ELSE c.oid::regclass::text END AS name
FROM pg_class c
WHERE c.relnamespace = 'public'::regnamespace
  AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
  AND c.relowner <> (SELECT oid FROM owner)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype IN ('a', 'i', 'e'))
UNION ALL
SELECT 'ROUTINE', p.oid::regprocedure::text
FROM pg_proc p
WHERE p.pronamespace = 'public'::regnamespace AND p.proowner <> (SELECT oid FROM owner)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                  AND d.objid = p.oid AND d.deptype = 'e')
UNION ALL
SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.oid::regtype::text
FROM pg_type t
WHERE t.typnamespace = 'public'::regnamespace AND t.typtype IN ('e', 'd', 'r', 'm')
  AND t.typowner <> (SELECT oid FROM owner)
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                  AND d.objid = t.oid AND d.deptype = 'e')
"""


async def transfer_ownership(connection: asyncpg.Connection, owner_role: str) -> list[str]:
    """Give every object of the schema to the owner role (a database migrated before the
    owner role existed belongs to whoever ran the migrations); returns what moved."""
    owner = await quoted(connection, owner_role)
    moved = []
    for row in await connection.fetch(_FOREIGN_OWNED, owner_role):
        await connection.execute(f"ALTER {row['kind']} {row['name']} OWNER TO {owner}")
        moved.append(f"{row['kind'].lower()} {row['name']}")
    return moved


async def refuse_privileged_service_role(
    connection: asyncpg.Connection, *, service_role: str, owner_role: str
) -> None:
    """The service role must not be a superuser nor able to act as the owner."""
    row = await connection.fetchrow(
        "SELECT rolsuper, pg_has_role(rolname, $2, 'MEMBER') AS owner_member "
        "FROM pg_roles WHERE rolname = $1",
        service_role,
        owner_role,
    )
    if row["rolsuper"]:
        raise MigrationRefused(
            f"the service role {service_role!r} is a superuser and could disable the audit "
            f"log's triggers: ALTER ROLE {service_role} NOSUPERUSER"
        )
    if row["owner_member"]:
        raise MigrationRefused(
            f"the service role {service_role!r} may act as the owner role {owner_role!r} and "
            f"so disable the audit log's triggers: REVOKE {owner_role} FROM {service_role}"
        )
