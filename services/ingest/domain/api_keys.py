"""API keys: their format, how a presented key is checked, and whom it names (pure).

A key reads ``vgk_<key id>_<secret>``: the key id (16 hex digits) finds the row, the
secret (256 random bits, base64url) proves possession. Only the SHA-256 of the secret is
stored: a fast hash is right for a high-entropy secret (nothing to brute-force), and the
comparison is constant-time. A key belongs to one source, allows named studies (and
optionally sites), and may be allowed to amend what other sources sent.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from services.ingest.domain.principals import Principal

KEY_PREFIX = "vgk"
_KEY_FORM = re.compile(r"^vgk_(?P<key_id>[0-9a-f]{16})_(?P<secret>[A-Za-z0-9_-]{43})$")
SOURCE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
HOW_TO_CREATE = (
    "create one with `vigil keys create --source NAME --study STUDY` (run with "
    "VIGIL_DATABASE_ADMIN_URL, the schema owner's DSN) and send it as "
    "'Authorization: Bearer <key>'"
)
# compared against when the key id is unknown, so every miss costs the same
_NO_SUCH_DIGEST = hashlib.sha256(b"no such key").digest()

KeyState = Literal["active", "expired", "revoked"]
AuthFailure = Literal[
    "missing-credential",
    "malformed-credential",
    "unknown-key",
    "wrong-secret",
    "revoked-key",
    "expired-key",
    "no-keys-configured",
]


def secret_digest(secret: str) -> bytes:
    """What is stored of a secret: its SHA-256."""
    return hashlib.sha256(secret.encode("ascii")).digest()


@dataclass(frozen=True)
class NewKey:
    """A freshly generated key; ``text`` is shown once and never stored."""

    key_id: str
    secret: str

    @property
    def text(self) -> str:
        return f"{KEY_PREFIX}_{self.key_id}_{self.secret}"

    @property
    def secret_sha256(self) -> bytes:
        return secret_digest(self.secret)


def generate_key() -> NewKey:
    """A new key id and a 256-bit secret from the operating system's CSPRNG."""
    return NewKey(secrets.token_hex(8), secrets.token_urlsafe(32))


@dataclass(frozen=True)
class PresentedKey:
    """A key as a client sent it, split into its id and secret."""

    key_id: str
    secret: str


def parse_key(text: str) -> PresentedKey | None:
    """The key id and secret of ``text``; None when it is not a Vigil API key."""
    match = _KEY_FORM.match(text.strip())
    if match is None:
        return None
    return PresentedKey(match["key_id"], match["secret"])


@dataclass(frozen=True)
class ApiKeyRecord:
    """One row of ``api_keys``: the key's scope and life, and the digest of its secret."""

    key_id: str
    source: str
    studies: frozenset[str]
    sites: frozenset[str] | None
    may_amend_others: bool
    secret_sha256: bytes
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    rotated_from: str | None = None

    def state(self, now: datetime) -> KeyState:
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def principal(self) -> Principal:
        return Principal(
            source=self.source,
            credential=f"api-key:{self.key_id}",
            studies=self.studies,
            sites=self.sites,
            may_amend_others=self.may_amend_others,
        )


@dataclass(frozen=True)
class Authenticated:
    principal: Principal


@dataclass(frozen=True)
class NotAuthenticated:
    """Why a request is refused (``reason`` is the metric's code) and what the client is
    told: the same words for an unknown key and a wrong secret, so a caller learns nothing
    about which key ids exist."""

    reason: AuthFailure
    detail: str


def credential_of(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a request carries: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

    Returns "" for a credential that is present but unusable (another scheme, an empty
    bearer, or two different keys), None when there is none.
    """
    bearer: str | None = None
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return ""
        bearer = value.strip()
    header = x_api_key.strip() if x_api_key is not None else None
    if bearer is not None and header is not None and bearer != header:
        return ""
    return bearer if bearer is not None else header


def authenticate(
    credential: str | None, keys: Mapping[str, ApiKeyRecord], now: datetime
) -> Authenticated | NotAuthenticated:
    """Check a presented credential against the known keys, at ``now``."""
    if not any(key.state(now) == "active" for key in keys.values()):
        return NotAuthenticated(
            "no-keys-configured",
            f"no API key is configured, so ingest accepts no writes: {HOW_TO_CREATE}",
        )
    if credential is None:
        return NotAuthenticated(
            "missing-credential",
            "this request needs an API key: send 'Authorization: Bearer <key>' "
            "(or 'X-API-Key: <key>')",
        )
    presented = parse_key(credential)
    if presented is None:
        return NotAuthenticated(
            "malformed-credential",
            "the credential is not a Vigil API key (vgk_<key id>_<secret>, one bearer "
            "token); send the key exactly as `vigil keys create` printed it",
        )
    record = keys.get(presented.key_id)
    expected = record.secret_sha256 if record is not None else _NO_SUCH_DIGEST
    matches = hmac.compare_digest(expected, secret_digest(presented.secret))
    if record is None or not matches:
        return NotAuthenticated(
            "unknown-key" if record is None else "wrong-secret",
            "the API key is not valid; check it was copied whole, or ask for a new one",
        )
    state = record.state(now)
    if state == "revoked":
        return NotAuthenticated(
            "revoked-key", "this API key was revoked; use the key that replaced it"
        )
    if state == "expired":
        return NotAuthenticated(
            "expired-key",
            "this API key has expired (or was rotated and its grace period ended); use "
            "the key that replaced it",
        )
    return Authenticated(record.principal())
