"""Sealing the workspace's stored TOTP secrets with VIGIL_WORKSPACE_SECRET_KEY (AES-256-GCM,
key derived by HKDF-SHA256, the person id bound as associated data so a sealed secret
cannot be moved to another account's row).

Production refuses to start without a key of at least 32 characters, as it refuses without
link keys; development without one derives a fixed, publicly known key and says so."""

from __future__ import annotations

import os

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from services.settings import VigilSettings

log = structlog.get_logger(__name__)

SETTING = "VIGIL_WORKSPACE_SECRET_KEY"
MIN_KEY_CHARACTERS = 32
_VERSION = b"\x01"
_NONCE_BYTES = 12
_DEVELOPMENT_KEY = "vigil-development-only-workspace-key-never-in-production"


class WorkspaceKeyRefused(RuntimeError):
    """The workspace key in the settings cannot be used; the message says how to fix it."""


class SealedSecretUnreadable(ValueError):
    """A stored secret does not open with this key (another key, or altered)."""


class SecretBox:
    """Seals and opens small secrets bound to a context (the person id)."""

    def __init__(self, key_text: str) -> None:
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"vigil workspace totp v1"
        ).derive(key_text.encode())
        self._aead = AESGCM(key)

    def seal(self, secret: str, context: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, secret.encode(), context.encode())

    def open(self, sealed: bytes, context: str) -> str:
        if sealed[:1] != _VERSION or len(sealed) < 1 + _NONCE_BYTES + 16:
            raise SealedSecretUnreadable("not a sealed secret of this version")
        nonce, body = sealed[1 : 1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, body, context.encode()).decode()
        except InvalidTag:
            raise SealedSecretUnreadable(
                f"a stored TOTP secret does not open with {SETTING}: the key changed (reset "
                "the person's second factor with `vigil users reset-totp`) or the row was altered"
            ) from None


def workspace_secret_box(settings: VigilSettings) -> SecretBox:
    """The box of the settings' key; refuses a missing or short key in production."""
    secret = settings.workspace_secret_key
    text = secret.get_secret_value() if secret is not None else ""
    how = (
        f"set {SETTING} (or {SETTING}_FILE, naming a file holding it) to at least "
        f"{MIN_KEY_CHARACTERS} random characters, e.g. "
        """`$(python -c "import secrets; print(secrets.token_urlsafe(48))")`"""
    )
    if not text:
        if settings.environment == "production":
            raise WorkspaceKeyRefused(f"no key seals the workspace's second factors: {how}")
        log.warning(
            "workspace.development_secret_key",
            hint=f"{SETTING} is unset: development seals TOTP secrets with a fixed, public "
            "key; never enrol a real authenticator here",
        )
        return SecretBox(_DEVELOPMENT_KEY)
    if len(text) < MIN_KEY_CHARACTERS:
        raise WorkspaceKeyRefused(f"{SETTING} is too short: {how}")
    return SecretBox(text)
