"""The workspace's demo users ``vigil dev`` signs in with: an investigator of each site, the
medical monitor and the data manager of each study's roster get a fresh random password at
every start, kept in ``<state-dir>/dev-users`` (mode 0600, like ``dev-api-key``) and shown
as sign-in lines. Also the development key that seals their second factors, made once.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from services.notifier.adapters.roster_files import load_rosters
from services.notifier.domain.roster import Role, Roster
from vigil.keys_cli import operator
from vigil.private_file import write_private_file
from vigil.users_cli import set_user_password

DEV_USERS_FILE = "dev-users"
WORKSPACE_KEY_FILE = "workspace-secret-key"
_SITE_ROLES = (Role.INVESTIGATOR, Role.SUB_INVESTIGATOR)
_STUDY_ROLES = (Role.MEDICAL_MONITOR, Role.DATA_MANAGER)


@dataclass(frozen=True)
class DemoUser:
    person_id: str
    password: str
    role: str
    where: str  # the site, or the study for study-level people

    def sign_in_line(self) -> str:
        return f"Workspace sign-in: {self.person_id} / {self.password} ({self.role}, {self.where})"


def demo_people(rosters: Mapping[str, Roster]) -> list[tuple[str, str, str]]:
    """(person id, role, site or study) of the demo users: per study, the first
    investigator of each site (a sub-investigator where a site has none), then the first
    medical monitor and data manager."""
    chosen: list[tuple[str, str, str]] = []
    for study_id, roster in sorted(rosters.items()):
        for site in roster.sites:
            for role in _SITE_ROLES:
                person = next((p for p in site.people if p.role == role), None)
                if person is not None:
                    chosen.append((person.id, role.value.replace("_", "-"), site.id))
                    break
        for role in _STUDY_ROLES:
            person = next((p for p in roster.study_contacts if p.role == role), None)
            if person is not None:
                chosen.append((person.id, role.value.replace("_", " "), study_id))
    unique: dict[str, tuple[str, str, str]] = {}
    for choice in chosen:  # someone on two studies' rosters signs in once
        unique.setdefault(choice[0], choice)
    return list(unique.values())


async def _set_passwords(admin_dsn: str, users: Sequence[DemoUser]) -> None:
    connection = await asyncpg.connect(admin_dsn)
    try:
        for user in users:
            await set_user_password(
                connection, user.person_id, user.password, f"vigil dev, {operator()}"
            )
    finally:
        await connection.close()


def issue_demo_users(admin_dsn: str, study_dir: Path, state_dir: Path) -> list[DemoUser]:
    """Give each demo user a new random password (their old sessions end) and write them
    to ``<state_dir>/dev-users`` (0600)."""
    users = [
        DemoUser(person_id, secrets.token_urlsafe(12), role, where)
        for person_id, role, where in demo_people(load_rosters(study_dir))
    ]
    asyncio.run(_set_passwords(admin_dsn, users))
    text = "".join(f"{u.person_id}\t{u.password}\t{u.role}\t{u.where}\n" for u in users)
    write_private_file(state_dir / DEV_USERS_FILE, text)
    return users


def read_demo_users(state_dir: Path) -> list[DemoUser]:
    """The demo users of the last start (none when the file is missing)."""
    path = state_dir / DEV_USERS_FILE
    if not path.is_file():
        return []
    users = []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        if len(fields) == 4:
            users.append(DemoUser(*fields))
    return users


def sign_in_lines(state_dir: Path) -> list[str]:
    """What the console shows of the demo users (for the start-up summary)."""
    return [user.sign_in_line() for user in read_demo_users(state_dir)]


def ensure_workspace_key(state_dir: Path) -> Path:
    """The development stack's VIGIL_WORKSPACE_SECRET_KEY file, made once (0600), so that
    enrolled second factors survive a restart."""
    path = state_dir / WORKSPACE_KEY_FILE
    if not path.is_file():
        write_private_file(path, secrets.token_urlsafe(48) + "\n")
    return path
