"""The database role the services use: INSERT and SELECT on the audit log, nothing more."""

from __future__ import annotations

import contextlib

import asyncpg

# Tables of the audit trail: the services may add and read, never change or remove.
APPEND_ONLY_TABLES = ("events", "audit_checkpoints", "received_messages", "dead_lettered_events")
# Working tables (queues, read models) the services maintain.
WORKING_TABLES = (
    "outbox",
    "deliveries",
    "projection_checkpoints",
    "subject_state",
    "subject_results",
    "ingest_outbox",
    "consumer_positions",
    "digest_items",
    # the workspace's sign-in: failed attempts, sessions and second factors change as people
    # sign in (passwords themselves are set by `vigil users`, recorded in the audit log)
    "workspace_accounts",
    "workspace_sessions",
    "workspace_oidc_logins",
    "signal_inbox",
)
READ_ONLY_TABLES = ("schema_migrations", "event_store_identity")
# API keys: the services read them; only the schema owner (`vigil keys`) creates or ends one,
# so a compromised service cannot mint itself a key.
KEY_TABLES = ("api_keys",)
# Who owns each subject and record: ingest claims (INSERT) and moves a subject's site, and
# can never hand a record to another source or forget who owns it.
OWNERSHIP_TABLES = ("ingest_subject_owners", "ingest_record_owners")


async def ensure_service_role(
    connection: asyncpg.Connection, role: str, password: str | None
) -> None:
    """Create the role when missing and (re)grant exactly what the services need."""
    quoted = await connection.fetchval("SELECT quote_ident($1)", role)
    if not await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
        # another database's upgrade in the same cluster may create it meanwhile
        with contextlib.suppress(asyncpg.DuplicateObjectError):
            await connection.execute(f"CREATE ROLE {quoted} LOGIN")
    if password is not None:
        literal = await connection.fetchval("SELECT quote_literal($1)", password)
        await connection.execute(f"ALTER ROLE {quoted} PASSWORD {literal}")
    database = await connection.fetchval("SELECT quote_ident(current_database())")
    statements = [
        f"GRANT CONNECT ON DATABASE {database} TO {quoted}",
        f"GRANT USAGE ON SCHEMA public TO {quoted}",
        f"REVOKE ALL ON {', '.join(APPEND_ONLY_TABLES)} FROM {quoted}",
        f"GRANT SELECT, INSERT ON {', '.join(APPEND_ONLY_TABLES)} TO {quoted}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON {', '.join(WORKING_TABLES)} "
        f"TO {quoted}",
        f"GRANT SELECT ON {', '.join(READ_ONLY_TABLES)} TO {quoted}",
        f"REVOKE ALL ON {', '.join(KEY_TABLES + OWNERSHIP_TABLES)} FROM {quoted}",
        f"GRANT SELECT ON {', '.join(KEY_TABLES)} TO {quoted}",
        f"GRANT SELECT, INSERT ON {', '.join(OWNERSHIP_TABLES)} TO {quoted}",
        f"GRANT UPDATE (site_id, moved_at) ON ingest_subject_owners TO {quoted}",
        f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {quoted}",
    ]
    for statement in statements:
        await connection.execute(statement)
