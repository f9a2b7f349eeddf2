"""Workspace pages in tests: a signed-in person without going through sign-in, for the
tests of one page (the sign-in itself is tested on its own and in the browser tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from fastapi import Request

from services.notifier.domain.roster import Roster
from services.notifier.domain.workspace_access import viewer_for
from services.notifier.entrypoints.workspace.common import Session, SignatureRefused


@dataclass
class FixedAuthenticator:
    """Every request is signed in as ``person_id`` (None: nobody); the signer's password is
    ``password`` and, when set, the second factor ``code``."""

    rosters: dict[str, Roster]
    person_id: str | None
    password: str = "correct horse battery staple"
    code: str | None = None
    refused: list[str] = field(default_factory=list)

    async def session(self, request: Request) -> Session | None:
        if self.person_id is None:
            return None
        viewer = viewer_for(self.person_id, self.rosters)
        if viewer is None:
            return None
        return Session(
            id="test-session",
            viewer=viewer,
            csrf="test-csrf",
            expires_at=datetime.now(UTC) + timedelta(hours=1),
        )

    async def confirm_signer(self, session: Session, password: str, code: str | None) -> str:
        if password != self.password:
            self.refused.append("password")
            raise SignatureRefused("password: not the signer's password")
        if self.code is not None:
            if code != self.code:
                self.refused.append("code")
                raise SignatureRefused("code: not the signer's current one-time code")
            return "password+totp"
        return "password"
