"""`vigil users` as an operator runs it: passwords (prompted twice or from stdin, checked
against the policy), unlock, reset-totp and list, each change in the audit log with who made
it and never the password."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from services.notifier.adapters.passwords import verify_password
from tests.support.services import REPO

pytestmark = pytest.mark.integration

STUDY_DIR = REPO / "studies"
PASSWORD = "a long and fine passphrase"


async def vigil_users(*args: str, dsn: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "VIGIL_DATABASE_URL": dsn,
        "VIGIL_STUDY_DIR": str(STUDY_DIR),
        "PYTHONPATH": str(REPO),
    }
    env.pop("VIGIL_DATABASE_ADMIN_URL", None)
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "vigil", "users", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(REPO),
        timeout=60,
        check=False,
    )


async def account_row(dsn: str, person_id: str) -> asyncpg.Record | None:
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetchrow(
            "SELECT * FROM workspace_accounts WHERE person_id = $1", person_id
        )
    finally:
        await connection.close()


async def test_each_account_change_is_in_the_audit_log_and_never_the_password(
    fresh_dsn: str,
) -> None:
    done = await vigil_users("set-password", "inv-0101", "--stdin", dsn=fresh_dsn,
                             stdin=PASSWORD + "\n")  # fmt: skip
    assert done.returncode == 0, done.stderr
    row = await account_row(fresh_dsn, "inv-0101")
    assert row is not None
    assert verify_password(row["password_hash"], PASSWORD)[0]
    connection = await asyncpg.connect(fresh_dsn)
    try:
        await connection.execute(
            """UPDATE workspace_accounts SET locked_until = $1, totp_secret = '\\x01',
                   totp_enabled_at = $1 WHERE person_id = 'inv-0101'""",
            datetime.now(UTC) + timedelta(minutes=10),
        )
    finally:
        await connection.close()
    listed = await vigil_users("list", dsn=fresh_dsn)
    assert listed.returncode == 0, listed.stderr
    line = next(x for x in listed.stdout.splitlines() if x.startswith("inv-0101"))
    assert "investigator" in line
    assert "set" in line
    assert "enrolled" in line
    assert "locked until" in line
    assert next(x for x in listed.stdout.splitlines() if x.startswith("mm-01")).split()[3:5] == [
        "none",
        "none",
    ]
    assert (await vigil_users("unlock", "inv-0101", dsn=fresh_dsn)).returncode == 0
    assert (await vigil_users("reset-totp", "inv-0101", dsn=fresh_dsn)).returncode == 0
    row = await account_row(fresh_dsn, "inv-0101")
    assert row is not None
    assert row["locked_until"] is None
    assert row["totp_secret"] is None
    again = await vigil_users("set-password", "inv-0101", "--stdin", dsn=fresh_dsn,
                              stdin="another fine passphrase\n")  # fmt: skip
    assert again.returncode == 0, again.stderr

    connection = await asyncpg.connect(fresh_dsn)
    try:
        rows = await connection.fetch(
            "SELECT payload_json FROM events WHERE stream_id = 'workspace-accounts' "
            "ORDER BY position"
        )
    finally:
        await connection.close()
    events = [json.loads(r["payload_json"]) for r in rows]
    assert [e["change"] for e in events] == [
        "password-set",
        "unlocked",
        "totp-reset",
        "password-changed",
    ]
    assert all(e["person_id"] == "inv-0101" for e in events)
    assert all("@" in e["changed_by"] for e in events)  # account@host of the operator
    assert PASSWORD not in json.dumps(events)
    assert "another fine passphrase" not in json.dumps(events)


@pytest.mark.parametrize(
    ("args", "stdin", "said"),
    [
        (("set-password", "inv-0101", "--stdin"), "too short\n", "at least 12 characters"),
        (("set-password", "inv-0101", "--stdin"), "pi.site01@vigil.example.org\n", "e-mail"),
        (("set-password", "nobody-99", "--stdin"), PASSWORD + "\n", "on no study roster"),
        (("unlock", "inv-0102"), "", "has no workspace account"),
    ],
)
async def test_a_refused_change_says_why_and_changes_nothing(
    fresh_dsn: str, args: tuple[str, ...], stdin: str, said: str
) -> None:
    refused = await vigil_users(*args, dsn=fresh_dsn, stdin=stdin)
    assert refused.returncode != 0
    assert said in refused.stderr
    assert stdin.strip() == "" or stdin.strip() not in refused.stderr
    assert await account_row(fresh_dsn, args[1]) is None


async def test_a_prompted_password_is_asked_twice_and_must_match(fresh_dsn: str) -> None:
    differ = await vigil_users("set-password", "inv-0101", dsn=fresh_dsn,
                               stdin=f"{PASSWORD}\n{PASSWORD}x\n")  # fmt: skip
    assert differ.returncode == 2
    assert "differ" in differ.stderr
    assert await account_row(fresh_dsn, "inv-0101") is None
    same = await vigil_users("set-password", "inv-0101", dsn=fresh_dsn,
                             stdin=f"{PASSWORD}\n{PASSWORD}\n")  # fmt: skip
    assert same.returncode == 0, same.stderr
    assert await account_row(fresh_dsn, "inv-0101") is not None
