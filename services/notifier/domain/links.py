"""Where a message leads, and the signed tokens systems acknowledge with.

Every message leads a person into the workspace, to the signal's page
(``{notifier public URL}/workspace/signals/{signal_id}``), where they sign in and sign
their assessment: no credential travels in an e-mail, since a bearer token in a mailbox
is no electronic signature. A webhook receiver, a system, gets a token as well, for the
JSON API (``POST /v1/signals/{signal_id}/acknowledgements``): one token per signal,
person and message.

A token is ``{key id}.{base64url(claims)}.{base64url(HMAC-SHA256(key, "{key id}.{claims}"))}``.
The claims name the signal, the person, when the token was issued, when it expires and a
random nonce, so every issued link is distinct and one link records one assessment.
Each part has one spelling: a token is accepted only as :func:`sign` writes it, never
padded or with other bits in the last character, so a link cannot be spelt anew to record
another assessment.

The server, not the token, decides how long a link lives: a token is valid until the
earlier of its own expiry and its issue time plus the server's cap, so a claimed expiry
can only shorten it. A token that claims more than the cap, or an issue time in the future
(beyond ``CLOCK_SKEW``), was not made by this server and is refused.

Keys rotate through a :class:`LinkKeyRing`: the active key signs, retired keys still
verify until they are removed from the settings. HMAC is deterministic, so the same claims
under the same key always give the same token: the outbox keeps the claims, never the
token, and a message sent again after a crash carries the same link.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict

from shared.json_input import decode

# How far ahead of this server's clock another instance's clock may run.
CLOCK_SKEW = timedelta(minutes=5)
# A longer token is not one this server issued; refused before any work is done on it.
MAX_TOKEN_LENGTH = 1024
# Shorter secrets are refused in production (RFC 2104 asks for at least the hash length).
MIN_SECRET_BYTES = 32
KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class InvalidLink(ValueError):
    """A token that is malformed, forged, altered, for another signal, or expired."""


@dataclass(frozen=True)
class LinkKey:
    """One signing key: its id travels in each token, its secret never leaves the process."""

    key_id: str
    secret: bytes = field(repr=False)


@dataclass(frozen=True)
class LinkKeyRing:
    """The active key, which signs, and the retired keys, which only verify."""

    active: LinkKey
    retired: tuple[LinkKey, ...] = ()

    def __post_init__(self) -> None:
        ids = [key.key_id for key in self.keys()]
        if len(set(ids)) != len(ids):
            raise ValueError("two link keys have the same key id: give each its own")

    def keys(self) -> tuple[LinkKey, ...]:
        return (self.active, *self.retired)

    def find(self, key_id: str) -> LinkKey | None:
        return next((key for key in self.keys() if key.key_id == key_id), None)


def parse_link_keys(text: str) -> list[LinkKey]:
    """``key-id:secret`` entries separated by commas or white space, in order (the first
    is the active one). Errors name the entry by position, never its secret."""
    keys = []
    for number, entry in enumerate(re.split(r"[\s,]+", text.strip()), start=1):
        if not entry:
            continue
        key_id, colon, secret = entry.partition(":")
        if not colon or not secret:
            raise ValueError(f"entry {number} is not of the form key-id:secret")
        if not KEY_ID.fullmatch(key_id):
            raise ValueError(f"entry {number}: a key id is 1 to 64 letters, digits, '-' or '_'")
        keys.append(LinkKey(key_id, secret.encode()))
    return keys


class LinkClaims(BaseModel):
    """What a token says; stored with a planned message instead of the token itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key_id: str
    signal_id: uuid.UUID
    person_id: str
    issued_at: AwareDatetime
    expires_at: AwareDatetime
    nonce: str


@dataclass(frozen=True)
class VerifiedLink:
    """A genuine, unexpired token: who may acknowledge, until when, and the token's id
    (a hash: what the audit log keeps instead of the token)."""

    claims: LinkClaims
    expires_at: datetime
    token_id: str

    @property
    def person_id(self) -> str:
        return self.claims.person_id


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """The bytes of canonical unpadded base64url text; ValueError for any other spelling
    (padding, characters outside the alphabet, unused bits set), so one value has one
    text."""
    raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    if _b64(raw) != text:
        raise ValueError("not canonical unpadded base64url")
    return raw


def _mac(secret: bytes, signed: str) -> bytes:
    return hmac.new(secret, signed.encode(), hashlib.sha256).digest()


def _seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def sign(key: LinkKey, claims: LinkClaims) -> str:
    """The token for ``claims`` under ``key`` (deterministic: the same inputs give the
    same token)."""
    body = {
        "s": str(claims.signal_id),
        "p": claims.person_id,
        "i": _seconds(claims.issued_at),
        "e": _seconds(claims.expires_at),
        "n": claims.nonce,
    }
    encoded = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    signed = f"{key.key_id}.{encoded}"
    return f"{signed}.{_b64(_mac(key.secret, signed))}"


def token_id(token: str) -> str:
    """What identifies a token in the audit log: its hash, from which it cannot be made."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def _claims_of(key_id: str, encoded: str) -> LinkClaims:
    try:
        body = decode(_unb64(encoded))
        return LinkClaims(
            key_id=key_id,
            signal_id=uuid.UUID(body["s"]),
            person_id=str(body["p"]),
            issued_at=datetime.fromtimestamp(int(body["i"]), UTC),
            expires_at=datetime.fromtimestamp(int(body["e"]), UTC),
            nonce=str(body["n"]),
        )
    except (ValueError, KeyError, TypeError, OverflowError, OSError) as error:
        raise InvalidLink("the token's claims are unreadable") from error


def verify_token(
    keys: LinkKeyRing, token: str, signal_id: uuid.UUID, now: datetime, valid_for: timedelta
) -> VerifiedLink:
    """The claims of a genuine, unexpired token for this signal; InvalidLink otherwise.

    Valid until the earlier of the token's expiry and its issue time plus ``valid_for``."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidLink("the token is longer than any this server issues")
    key_id, encoded, mac = ([*token.split("."), "", "", ""])[:3]
    if token.count(".") != 2 or not key_id or not encoded or not mac:
        raise InvalidLink("the token is not of the form key.claims.signature")
    key = keys.find(key_id)
    if key is None:
        raise InvalidLink(
            "the token was signed with a key this server does not hold (removed, or never "
            "issued): ask for a new link"
        )
    # compared as text with the one spelling sign() gives: base64url has others for the
    # same bytes (padding, the last character's unused bits), and each accepted spelling
    # would be another link
    canonical = f"{key_id}.{encoded}.{_b64(_mac(key.secret, f'{key_id}.{encoded}'))}"
    if not hmac.compare_digest(token.encode(), canonical.encode()):
        raise InvalidLink("the token's signature does not match: forged or altered")
    claims = _claims_of(key_id, encoded)
    if claims.signal_id != signal_id:
        raise InvalidLink("the token was issued for another signal")
    if claims.issued_at > now + CLOCK_SKEW:
        raise InvalidLink("the token claims to be issued in the future: not issued here")
    if claims.expires_at > claims.issued_at + valid_for:
        raise InvalidLink("the token claims a longer validity than this server grants")
    expires_at = min(claims.expires_at, claims.issued_at + valid_for)
    if now >= expires_at:
        raise InvalidLink(f"the token expired at {expires_at.isoformat()}: ask for a new link")
    return VerifiedLink(claims, expires_at, token_id(canonical))


_TOKEN_IN_TEXT = re.compile(r"(token=)[\w.~%-]+")


def without_tokens(text: str) -> str:
    """``text`` with every link's token cut out: for error texts that may echo a message
    (a webhook receiver's answer), before they are stored or logged."""
    return _TOKEN_IN_TEXT.sub(r"\1[removed]", text)


def workspace_signal_url(base_url: str, signal_id: uuid.UUID) -> str:
    """The signal's page in the workspace, where a person assesses and signs (signing in
    first): what every message links to."""
    return f"{base_url.rstrip('/')}/workspace/signals/{signal_id}"


def workspace_issue_url(base_url: str, issue_id: uuid.UUID) -> str:
    """A data-quality issue in the workspace's queue, where the data manager marks it
    reviewed (signing in first)."""
    return f"{base_url.rstrip('/')}/workspace/data-quality?issue={issue_id}"


def acknowledgement_api_url(base_url: str, signal_id: uuid.UUID) -> str:
    """Where a system POSTs an acknowledgement with a token."""
    return f"{base_url.rstrip('/')}/v1/signals/{signal_id}/acknowledgements"


def acknowledgement_url(base_url: str, signal_id: uuid.UUID, token: str) -> str:
    """The old link form with the token in it, still in webhook payloads (deprecated
    ``acknowledge_url``) for receivers that read the token from it; opened in a browser
    it leads to the workspace without the token."""
    return f"{base_url.rstrip('/')}/signals/{signal_id}/acknowledge?token={token}"


#: channels whose messages go to systems, which acknowledge with a token through the API;
#: every other channel (e-mail) reaches a person, who signs in the workspace
TOKEN_CHANNELS: frozenset[str] = frozenset({"webhook"})


@dataclass(frozen=True)
class MessageLink:
    """What a message carries for one signal: the workspace page a person opens, and, on
    a system's channel only, the token it acknowledges with and where."""

    url: str
    token: str | None = field(default=None, repr=False)
    api_url: str | None = None
    acknowledge_url: str | None = field(default=None, repr=False)

    @property
    def item_url(self) -> str:
        """What a digest's item line shows: the token link on a system's channel (its
        receiver acknowledges the item with it), else the workspace page."""
        return self.acknowledge_url or self.url


@dataclass(frozen=True)
class LinkIssuer:
    """Issues and checks each person's acknowledgement tokens for a signal, and makes the
    links messages carry; ``base_url`` is the notifier's public address."""

    keys: LinkKeyRing
    base_url: str
    valid_for: timedelta

    def claims(self, signal_id: uuid.UUID, person_id: str, now: datetime) -> LinkClaims:
        """New claims under the active key, valid for the server's whole cap."""
        issued_at = now.replace(microsecond=0)
        return LinkClaims(
            key_id=self.keys.active.key_id,
            signal_id=signal_id,
            person_id=person_id,
            issued_at=issued_at,
            expires_at=issued_at + self.valid_for,
            nonce=secrets.token_urlsafe(12),
        )

    def token(self, claims: LinkClaims) -> str:
        """The token for stored claims: under the key they name while it is held; a key
        removed since they were planned is replaced by the active one."""
        key = self.keys.find(claims.key_id)
        if key is None:
            key = self.keys.active
            claims = claims.model_copy(update={"key_id": key.key_id})
        return sign(key, claims)

    def url(self, claims: LinkClaims) -> str:
        """The token link for stored claims (what a webhook payload carries)."""
        return acknowledgement_url(self.base_url, claims.signal_id, self.token(claims))

    def workspace_url(self, signal_id: uuid.UUID) -> str:
        return workspace_signal_url(self.base_url, signal_id)

    def issue_url(self, issue_id: uuid.UUID) -> str:
        return workspace_issue_url(self.base_url, issue_id)

    def message_link(self, claims: LinkClaims, channel: str) -> MessageLink:
        """What a message on ``channel`` carries for the claims' signal: always the
        workspace page; the token only on a system's channel (never in an e-mail)."""
        url = self.workspace_url(claims.signal_id)
        if channel not in TOKEN_CHANNELS:
            return MessageLink(url)
        token = self.token(claims)
        return MessageLink(
            url,
            token=token,
            api_url=acknowledgement_api_url(self.base_url, claims.signal_id),
            acknowledge_url=acknowledgement_url(self.base_url, claims.signal_id, token),
        )

    def verify(self, token: str, signal_id: uuid.UUID, now: datetime) -> VerifiedLink:
        return verify_token(self.keys, token, signal_id, now, self.valid_for)


def relinked(
    links: Iterable[LinkClaims | None], person_id: str, issuer: LinkIssuer, now: datetime
) -> tuple[LinkClaims | None, ...]:
    """The same signals' links for another person (a message that falls back to a
    backup): new claims, so the backup acknowledges as themself."""
    return tuple(
        None if claims is None else issuer.claims(claims.signal_id, person_id, now)
        for claims in links
    )
