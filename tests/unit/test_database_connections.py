"""Every PostgreSQL connection Vigil opens takes its TLS settings from the DSN alone
(``sslmode``, ``sslrootcert``, ``sslcert``, ``sslkey``, or libpq's PG* variables): no call
overrides them, so ``sslmode=verify-full`` in VIGIL_DATABASE_URL holds everywhere.
tests/integration/test_postgres_tls.py proves it on a real TLS cluster."""

from __future__ import annotations

import ast

from tests.support.services import REPO

CONNECTING = {"connect", "create_pool"}


def test_no_database_connection_overrides_the_dsns_tls_parameters() -> None:
    found = 0
    for folder in ("shared", "services", "vigil"):
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                    continue
                owner = node.func.value
                if node.func.attr in CONNECTING and getattr(owner, "id", "") == "asyncpg":
                    found += 1
                    overridden = {k.arg for k in node.keywords} & {"ssl", "direct_tls"}
                    assert not overridden, f"{path.relative_to(REPO)}:{node.lineno}"
    assert found >= 5
