"""`vigil dev`'s workspace demo users: who they are, their passwords (fresh at each start,
kept 0600 and working), and the sign-in lines the console shows."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import asyncpg
import pytest

from services.notifier.adapters.passwords import verify_password
from services.notifier.adapters.roster_files import load_rosters
from tests.support.services import REPO
from vigil.devstack.demo_users import (
    demo_people,
    ensure_workspace_key,
    issue_demo_users,
    sign_in_lines,
)

pytestmark = pytest.mark.integration

STUDIES = REPO / "studies"


def test_the_demo_users_are_an_investigator_of_each_site_the_monitor_and_the_data_manager() -> None:
    assert demo_people(load_rosters(STUDIES)) == [
        ("inv-0101", "investigator", "PKUPH-01"),
        ("inv-0201", "investigator", "PKUPH-02"),
        ("mm-01", "medical monitor", "NCT05262686"),
        ("dm-01", "data manager", "NCT05262686"),
    ]


async def test_each_start_gives_new_working_passwords_kept_only_for_the_owner(
    fresh_dsn: str, tmp_path: Path
) -> None:
    first = await asyncio.to_thread(issue_demo_users, fresh_dsn, STUDIES, tmp_path)
    stored = tmp_path / "dev-users"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    lines = sign_in_lines(tmp_path)
    assert lines[0] == f"Workspace sign-in: inv-0101 / {first[0].password} (investigator, PKUPH-01)"
    assert len(lines) == 4
    second = await asyncio.to_thread(issue_demo_users, fresh_dsn, STUDIES, tmp_path)
    assert {u.password for u in first}.isdisjoint({u.password for u in second})
    connection = await asyncpg.connect(fresh_dsn)
    try:
        hashes = dict(
            await connection.fetch("SELECT person_id, password_hash FROM workspace_accounts")
        )
    finally:
        await connection.close()
    for user in second:
        assert len(user.password) >= 12
        assert verify_password(hashes[user.person_id], user.password)[0]
    key = ensure_workspace_key(tmp_path)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert ensure_workspace_key(tmp_path).read_text() == key.read_text()
    assert len(key.read_text().strip()) >= 32
