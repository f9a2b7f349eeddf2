"""Signed, expiring acknowledgement links: one token per signal and person.

A token is ``base64url(claims) "." base64url(HMAC-SHA256(secret, base64url(claims)))``;
the claims name the signal, the person and the expiry. Whoever holds the token may
acknowledge that signal as that person until it expires, so it is only ever sent to that
person's own channels.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


class InvalidLink(ValueError):
    """A token that is malformed, forged, altered, for another signal, or expired."""


@dataclass(frozen=True)
class LinkClaims:
    signal_id: uuid.UUID
    person_id: str
    expires_at: datetime
    token_id: str


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, body: str) -> bytes:
    return hmac.new(secret, body.encode(), hashlib.sha256).digest()


def issue_token(secret: bytes, signal_id: uuid.UUID, person_id: str, expires_at: datetime) -> str:
    """A token letting ``person_id`` acknowledge ``signal_id`` until ``expires_at``."""
    claims = {"s": str(signal_id), "p": person_id, "e": int(expires_at.timestamp())}
    body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{_b64(_mac(secret, body))}"


def verify_token(secret: bytes, token: str, signal_id: uuid.UUID, now: datetime) -> LinkClaims:
    """The claims of a genuine, unexpired token for this signal; InvalidLink otherwise."""
    body, dot, mac = token.partition(".")
    if not dot or not body or not mac:
        raise InvalidLink("the token is not of the form claims.signature")
    try:
        given = _unb64(mac)
    except ValueError as error:
        raise InvalidLink("the token's signature is not base64url") from error
    if not hmac.compare_digest(given, _mac(secret, body)):
        raise InvalidLink("the token's signature does not match: forged or altered")
    try:
        claims = json.loads(_unb64(body))
        claimed_signal = uuid.UUID(claims["s"])
        person_id = str(claims["p"])
        expires_at = datetime.fromtimestamp(int(claims["e"]), UTC)
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidLink("the token's claims are unreadable") from error
    if claimed_signal != signal_id:
        raise InvalidLink("the token was issued for another signal")
    if now >= expires_at:
        raise InvalidLink(f"the token expired at {expires_at.isoformat()}")
    token_id = hashlib.sha256(token.encode()).hexdigest()[:16]
    return LinkClaims(claimed_signal, person_id, expires_at, token_id)


def acknowledgement_url(base_url: str, signal_id: uuid.UUID, token: str) -> str:
    """Where the person reviews and acknowledges the signal."""
    return f"{base_url.rstrip('/')}/signals/{signal_id}/acknowledge?token={token}"


@dataclass(frozen=True)
class LinkIssuer:
    """Issues each person's acknowledgement link for a signal."""

    secret: bytes
    base_url: str
    valid_for: timedelta

    def link(self, signal_id: uuid.UUID, person_id: str, now: datetime) -> str:
        token = issue_token(self.secret, signal_id, person_id, now + self.valid_for)
        return acknowledgement_url(self.base_url, signal_id, token)

    def verify(self, token: str, signal_id: uuid.UUID, now: datetime) -> LinkClaims:
        return verify_token(self.secret, token, signal_id, now)
