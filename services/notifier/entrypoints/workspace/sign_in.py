"""Who is signed in to the workspace: passwords, lockout, the second factor, sessions and
the e-signature's re-authentication, over the account tables (migration 0016).

A sign-in that fails says the same thing, in about the same time, whether the name is
unknown, the password wrong or the account locked: an unknown name is verified against a
dummy hash. Every outcome is logged with the person id when the name named one, never with
what was typed as the password.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import structlog
from fastapi import Request

from services.notifier.adapters import workspace_accounts as store
from services.notifier.adapters.passwords import (
    hash_password,
    spend_the_same_time,
    verify_password,
)
from services.notifier.adapters.secret_box import SealedSecretUnreadable, SecretBox
from services.notifier.domain import totp
from services.notifier.domain.accounts import (
    PASSWORD_MAX_LENGTH,
    LockoutPolicy,
    SessionLifetime,
    email_of,
    password_problem,
)
from services.notifier.domain.roster import Roster
from services.notifier.domain.workspace_access import viewer_for
from services.notifier.entrypoints.workspace.common import (
    SESSION_COOKIE,
    Session,
    SignatureRefused,
)
from shared.clock import Clock

log = structlog.get_logger(__name__)

#: how long the second step (the one-time code) may take after the password was accepted
SECOND_FACTOR_WINDOW = timedelta(minutes=5)
TOKEN_MAX_LENGTH = 100
STAGE_SECOND_FACTOR = "second-factor"
STAGE_SIGNED_IN = "signed-in"


@dataclass(frozen=True)
class Refused:
    """The one answer to a failed sign-in, whatever the reason."""


@dataclass(frozen=True)
class SecondFactorNeeded:
    token: str  # of the pending session: the cookie until the code is given


@dataclass(frozen=True)
class SignedIn:
    token: str
    next_url: str
    person_id: str


Outcome = Refused | SecondFactorNeeded | SignedIn


def session_token(request: Request) -> str | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > TOKEN_MAX_LENGTH:
        return None
    return token


def session_id(token: str) -> str:
    """A name for a session in logs and pages that cannot be used as its token."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


class PasswordChangeRefused(ValueError):
    """The message names the field to look at."""


class WorkspaceSignIn:
    """The workspace's Authenticator over PostgreSQL, and the sign-in steps behind the
    account pages."""

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        rosters: Mapping[str, Roster],
        clock: Clock,
        box: SecretBox,
        lockout: LockoutPolicy,
        lifetime: SessionLifetime,
    ) -> None:
        self._pool = pool
        self.rosters = rosters
        self.clock = clock
        self.box = box
        self.lockout = lockout
        self.lifetime = lifetime

    # --- the Authenticator port ------------------------------------------------------

    async def session(self, request: Request) -> Session | None:
        token = session_token(request)
        if token is None:
            return None
        now = self.clock.now()
        async with self._pool().acquire() as connection:
            stored = await store.load_session(connection, token)
            if stored is None or stored.revoked_at is not None or stored.stage != STAGE_SIGNED_IN:
                return None
            if not self.lifetime.alive(stored.created_at, stored.last_seen_at, now):
                return None
            viewer = viewer_for(stored.person_id, self.rosters)
            if viewer is None:  # taken off every roster: the session ends with it
                log.info(
                    "workspace.session_refused",
                    person_id=stored.person_id,
                    reason="not on any roster",
                )
                return None
            await store.touch_session(connection, token, now)
        expires = min(now + self.lifetime.idle, self.lifetime.expires_at(stored.created_at))
        return Session(id=session_id(token), viewer=viewer, csrf=stored.csrf, expires_at=expires)

    async def confirm_signer(self, session: Session, password: str, code: str | None) -> str:
        person_id = session.viewer.person_id
        # the failure is counted (committed) before the refusal is raised
        async with self._pool().acquire() as connection, connection.transaction():
            method, refusal = await self._confirm(connection, person_id, password, code)
        if refusal is not None:
            raise SignatureRefused(refusal)
        log.info("workspace.signature_confirmed", person_id=person_id, method=method)
        return method

    async def _confirm(
        self, connection: asyncpg.Connection, person_id: str, password: str, code: str | None
    ) -> tuple[str, str | None]:
        now = self.clock.now()
        account = await store.load_account(connection, person_id, for_update=True)
        if account is None or account.password_hash is None:
            await asyncio.to_thread(spend_the_same_time, password[:PASSWORD_MAX_LENGTH])
            return "", (
                "password: this account has no workspace password to sign with; an "
                "administrator sets one with `vigil users set-password`"
            )
        if self.lockout.is_locked(account.locked_until, now):
            return "", "password: the account is locked after repeated failures; try later"
        ok, rehash = await asyncio.to_thread(
            verify_password, account.password_hash, password[:PASSWORD_MAX_LENGTH]
        )
        if not ok:
            await self._failed(connection, person_id, account.failed_attempts, now, "signature")
            return "", "password: not the signer's password"
        if rehash is not None:
            await store.rehash_password(connection, person_id, rehash)
        if not account.has_totp:
            await store.clear_failures(connection, person_id)
            return "password", None
        step = self._accepted_step(account, code or "", now)
        if step is None or not await store.use_totp_step(connection, person_id, step):
            await self._failed(connection, person_id, account.failed_attempts, now, "signature")
            return "", "code: not the signer's current one-time code"
        return "password+totp", None

    # --- sign-in, second step, sign-out ----------------------------------------------

    async def sign_in(self, person_id: str | None, password: str, next_url: str) -> Outcome:
        """The first step: ``person_id`` is who the typed name named (None: nobody)."""
        password = password[:PASSWORD_MAX_LENGTH]
        now = self.clock.now()
        if person_id is None or viewer_for(person_id, self.rosters) is None:
            await asyncio.to_thread(spend_the_same_time, password)
            log.warning("workspace.sign_in_failed", reason="unknown name")
            return Refused()
        async with self._pool().acquire() as connection, connection.transaction():
            account = await store.load_account(connection, person_id, for_update=True)
            if account is None or account.password_hash is None:
                await asyncio.to_thread(spend_the_same_time, password)
                log.warning("workspace.sign_in_failed", person_id=person_id, reason="no password")
                return Refused()
            if self.lockout.is_locked(account.locked_until, now):
                await asyncio.to_thread(spend_the_same_time, password)
                log.warning("workspace.sign_in_failed", person_id=person_id, reason="locked")
                return Refused()
            ok, rehash = await asyncio.to_thread(verify_password, account.password_hash, password)
            if not ok:
                await self._failed(connection, person_id, account.failed_attempts, now, "sign-in")
                return Refused()
            await store.clear_failures(connection, person_id)
            if rehash is not None:
                await store.rehash_password(connection, person_id, rehash)
            if account.has_totp:
                token = await self._new_session(
                    connection, person_id, STAGE_SECOND_FACTOR, "password", next_url, now
                )
                log.info("workspace.sign_in_password_accepted", person_id=person_id)
                return SecondFactorNeeded(token)
            token = await self._new_session(
                connection, person_id, STAGE_SIGNED_IN, "password", next_url, now
            )
            # ended sessions are kept a day (for whoever reads the table after an incident)
            await store.forget_ended_sessions(connection, now - timedelta(days=1))
        log.info("workspace.signed_in", person_id=person_id, method="password")
        return SignedIn(token, next_url, person_id)

    async def second_factor(self, token: str | None, code: str) -> Outcome | None:
        """The second step. None: there is no pending sign-in (start again)."""
        if token is None:
            return None
        now = self.clock.now()
        async with self._pool().acquire() as connection, connection.transaction():
            stored = await store.load_session(connection, token)
            if (
                stored is None
                or stored.stage != STAGE_SECOND_FACTOR
                or stored.revoked_at is not None
                or now >= stored.expires_at
                or viewer_for(stored.person_id, self.rosters) is None
            ):
                return None
            person_id = stored.person_id
            account = await store.load_account(connection, person_id, for_update=True)
            if account is None or not account.has_totp:
                return None
            if self.lockout.is_locked(account.locked_until, now):
                log.warning("workspace.sign_in_failed", person_id=person_id, reason="locked")
                await store.revoke_session(connection, token, now)
                return Refused()
            step = self._accepted_step(account, code, now)
            if step is None or not await store.use_totp_step(connection, person_id, step):
                locked = await self._failed(
                    connection, person_id, account.failed_attempts, now, "second factor"
                )
                if locked:
                    await store.revoke_session(connection, token, now)
                return Refused()
            await store.revoke_session(connection, token, now)
            new_token = await self._new_session(
                connection, person_id, STAGE_SIGNED_IN, "password+totp", stored.next_url, now
            )
        log.info("workspace.signed_in", person_id=person_id, method="password+totp")
        return SignedIn(new_token, stored.next_url, person_id)

    async def sign_in_verified(self, person_id: str, method: str, next_url: str) -> SignedIn:
        """A session for a person an identity provider vouched for (OIDC)."""
        now = self.clock.now()
        async with self._pool().acquire() as connection:
            token = await self._new_session(
                connection, person_id, STAGE_SIGNED_IN, method, next_url, now
            )
        log.info("workspace.signed_in", person_id=person_id, method=method)
        return SignedIn(token, next_url, person_id)

    async def sign_out(self, token: str, person_id: str) -> None:
        async with self._pool().acquire() as connection:
            await store.revoke_session(connection, token, self.clock.now())
        log.info("workspace.signed_out", person_id=person_id)

    # --- the account page ------------------------------------------------------------

    async def account(self, person_id: str) -> store.Account | None:
        async with self._pool().acquire() as connection:
            return await store.load_account(connection, person_id)

    async def change_password(
        self, person_id: str, token: str, current: str, new: str, again: str
    ) -> None:
        """Change the signed-in person's password; every other session of theirs ends.
        Raises PasswordChangeRefused naming the field."""
        problem = password_problem(new, person_id, email_of(person_id, self.rosters))
        if problem is not None:
            raise PasswordChangeRefused(f"New password: {problem}")
        if new != again:
            raise PasswordChangeRefused("New password, again: the two new passwords differ")
        # a failure is counted (committed) before the refusal is raised
        async with self._pool().acquire() as connection, connection.transaction():
            refusal = await self._change(connection, person_id, token, current, new)
        if refusal is not None:
            raise PasswordChangeRefused(refusal)
        log.info("workspace.password_changed", person_id=person_id)

    async def _change(
        self, connection: asyncpg.Connection, person_id: str, token: str, current: str, new: str
    ) -> str | None:
        now = self.clock.now()
        account = await store.load_account(connection, person_id, for_update=True)
        if account is None or account.password_hash is None:
            return "Current password: this account has no workspace password"
        if self.lockout.is_locked(account.locked_until, now):
            return "Current password: the account is locked after repeated failures; try later"
        ok, _ = await asyncio.to_thread(
            verify_password, account.password_hash, current[:PASSWORD_MAX_LENGTH]
        )
        if not ok:
            await self._failed(connection, person_id, account.failed_attempts, now, "change")
            return "Current password: not your current password"
        new_hash = await asyncio.to_thread(hash_password, new)
        await store.set_password(
            connection,
            person_id,
            new_hash,
            now=now,
            changed_by=f"person:{person_id}",
            keep_session=store.token_digest(token),
        )
        return None

    async def begin_totp(self, person_id: str) -> str | None:
        """The secret to enrol (the pending one when there is one); None: no account."""
        async with self._pool().acquire() as connection, connection.transaction():
            account = await store.load_account(connection, person_id, for_update=True)
            if account is None or account.password_hash is None or account.has_totp:
                return None
            if account.totp_pending is not None:
                with contextlib.suppress(SealedSecretUnreadable):  # else: a new one
                    return self.box.open(account.totp_pending, person_id)
            secret = totp.new_secret()
            await store.set_pending_totp(connection, person_id, self.box.seal(secret, person_id))
            return secret

    async def pending_totp(self, person_id: str) -> str | None:
        account = await self.account(person_id)
        if account is None or account.totp_pending is None or account.has_totp:
            return None
        try:
            return self.box.open(account.totp_pending, person_id)
        except SealedSecretUnreadable:
            return None  # sealed under an older key: "Set up" makes a new one

    async def confirm_totp(self, person_id: str, code: str) -> bool:
        """Enable the pending second factor when ``code`` is its current code."""
        now = self.clock.now()
        async with self._pool().acquire() as connection, connection.transaction():
            account = await store.load_account(connection, person_id, for_update=True)
            if account is None or account.totp_pending is None or account.has_totp:
                return False
            try:
                secret = self.box.open(account.totp_pending, person_id)
            except SealedSecretUnreadable:
                return False
            step = totp.accepted_step(secret, code, now, None)
            if step is None:
                return False
            await store.enable_totp(connection, person_id, account.totp_pending, step, now)
        log.info("workspace.totp_enrolled", person_id=person_id)
        return True

    # --- inside ----------------------------------------------------------------------

    def _accepted_step(self, account: store.Account, code: str, now: datetime) -> int | None:
        assert account.totp_secret is not None
        try:
            secret = self.box.open(account.totp_secret, account.person_id)
        except SealedSecretUnreadable as error:
            # no code can be right: the person is refused like any wrong code, and the
            # operator is told what to do
            log.error("workspace.totp_secret_unreadable", person_id=account.person_id,
                      problem=str(error))  # fmt: skip
            return None
        return totp.accepted_step(secret, code[:20], now, account.totp_last_step)

    async def _failed(
        self,
        connection: asyncpg.Connection,
        person_id: str,
        failed_attempts: int,
        now: datetime,
        during: str,
    ) -> bool:
        """Count one failure; True when it locked the account."""
        failed, locked_until = self.lockout.after_failure(failed_attempts, now)
        await store.record_failure(connection, person_id, failed, locked_until)
        if locked_until is not None:
            log.warning(
                "workspace.account_locked",
                person_id=person_id,
                during=during,
                until=locked_until.isoformat(),
            )
        else:
            log.warning(
                "workspace.sign_in_failed", person_id=person_id, reason="wrong", during=during
            )
        return locked_until is not None

    async def _new_session(
        self,
        connection: asyncpg.Connection,
        person_id: str,
        stage: str,
        method: str,
        next_url: str,
        now: datetime,
    ) -> str:
        token = secrets.token_urlsafe(32)  # 256 bits
        expires = (
            now + SECOND_FACTOR_WINDOW
            if stage == STAGE_SECOND_FACTOR
            else self.lifetime.expires_at(now)
        )
        await store.create_session(
            connection,
            token,
            person_id=person_id,
            stage=stage,
            method=method,
            csrf=secrets.token_urlsafe(32),
            next_url=next_url,
            now=now,
            expires_at=expires,
        )
        return token
