"""Workspace sign-in rules (pure): who a sign-in name names, the password policy, lockout,
how long a session lives, and where a browser may be sent back to after signing in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import unquote, urlsplit

from services.notifier.domain.roster import Roster
from services.notifier.domain.workspace_access import Viewer

PASSWORD_MIN_LENGTH = 12
#: Argon2 is slow on purpose; a multi-megabyte "password" would make it slower still
PASSWORD_MAX_LENGTH = 1024
SIGN_IN_NAME_MAX_LENGTH = 254
NEXT_MAX_LENGTH = 2000
WORKSPACE_HOME = "/workspace/"


def person_named(sign_in_name: str, rosters: Mapping[str, Roster]) -> str | None:
    """The roster person id a sign-in name names: the id itself, or the person's e-mail
    address in any case. None: nobody on any roster (or an address two people share)."""
    name = sign_in_name.strip()
    if not name or len(name) > SIGN_IN_NAME_MAX_LENGTH:
        return None
    for roster in rosters.values():
        if roster.person(name) is not None:
            return name
    return person_with_email(name, rosters)


def person_with_email(address: str, rosters: Mapping[str, Roster]) -> str | None:
    """The one roster person whose e-mail is ``address`` (any case), else None."""
    wanted = address.casefold()
    found = {
        person.id
        for roster in rosters.values()
        for person in roster.everyone()
        if person.email is not None and person.email.casefold() == wanted
    }
    return found.pop() if len(found) == 1 else None


def email_of(person_id: str, rosters: Mapping[str, Roster]) -> str | None:
    for roster in rosters.values():
        person = roster.person(person_id)
        if person is not None and person.email is not None:
            return person.email
    return None


def password_problem(password: str, person_id: str, email: str | None) -> str | None:
    """Why ``password`` may not be used (a sentence naming the rule), or None."""
    if len(password) < PASSWORD_MIN_LENGTH:
        return f"the password must have at least {PASSWORD_MIN_LENGTH} characters"
    if len(password) > PASSWORD_MAX_LENGTH:
        return f"the password may have at most {PASSWORD_MAX_LENGTH} characters"
    folded = password.strip().casefold()
    if folded == person_id.casefold() or (email is not None and folded == email.casefold()):
        return "the password must not be the person id or e-mail address"
    return None


@dataclass(frozen=True)
class LockoutPolicy:
    """``attempts`` failures in a row lock an account for ``duration``."""

    attempts: int
    duration: timedelta

    def is_locked(self, locked_until: datetime | None, now: datetime) -> bool:
        return locked_until is not None and now < locked_until

    def after_failure(self, failed_attempts: int, now: datetime) -> tuple[int, datetime | None]:
        """The failure count and lock after one more failure: at the limit the account is
        locked and the count starts again (the next lock needs as many failures)."""
        failed = failed_attempts + 1
        if failed >= self.attempts:
            return 0, now + self.duration
        return failed, None


@dataclass(frozen=True)
class SessionLifetime:
    """A session ends ``idle`` after its last use, and ``absolute`` after sign-in."""

    idle: timedelta
    absolute: timedelta

    def expires_at(self, created_at: datetime) -> datetime:
        return created_at + self.absolute

    def alive(self, created_at: datetime, last_seen_at: datetime, now: datetime) -> bool:
        return now < last_seen_at + self.idle and now < self.expires_at(created_at)


def local_next(value: str | None) -> str:
    """Where to go after signing in: ``value`` when it is a path of this workspace (never
    another host, scheme or a path that a browser would read as one), else the home page.

    The checks hold for the path as a browser resolves it: percent-escapes are undone (as
    often as they nest) before looking for ``.``/``..`` segments, because a browser reads
    ``%2e%2e`` as ``..`` (WHATWG URL) and ``/workspace/%2e%2e/metrics`` is ``/metrics``."""
    if not value or len(value) > NEXT_MAX_LENGTH:
        return WORKSPACE_HOME
    if _unsafe_characters(value):
        return WORKSPACE_HOME
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or value.startswith("//"):
        return WORKSPACE_HOME
    path = _fully_decoded(parts.path)
    if path is None or _unsafe_characters(path):
        return WORKSPACE_HOME
    if not (path == "/workspace" or path.startswith("/workspace/")):
        return WORKSPACE_HOME
    if any(segment in {".", ".."} for segment in path.split("/")):
        return WORKSPACE_HOME
    if path.startswith("/workspace/sign-"):
        return WORKSPACE_HOME
    return value


def _unsafe_characters(text: str) -> bool:
    """Control characters, spaces and backslashes (which browsers read as ``/``)."""
    return any(ord(c) < 0x21 or ord(c) == 0x7F or c == "\\" for c in text)


def _fully_decoded(path: str, rounds: int = 4) -> str | None:
    """``path`` with percent-escapes undone until none is left; None when they nest deeper
    than any honest link would (the caller then refuses the path)."""
    for _ in range(rounds):
        decoded = unquote(path)
        if decoded == path:
            return path
        path = decoded
    return None


def landing_page(viewer: Viewer) -> str:
    """The page ``GET /workspace/`` opens: the inbox for anyone who sees signals, the
    data-quality queue for a data manager."""
    if viewer.clinical_studies():
        return "/workspace/inbox"
    return "/workspace/data-quality"
