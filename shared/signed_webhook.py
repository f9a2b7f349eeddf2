"""The signature every Vigil webhook carries (the notifier's alerts, the watchdog's
reports): ``X-Vigil-Timestamp`` (Unix seconds) and ``X-Vigil-Signature`` (``v1=`` hex
HMAC-SHA256 over ``"{timestamp}.{body}"`` with the shared secret). A receiver refuses a
timestamp older than a few minutes, so a captured request cannot be replayed later."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Vigil-Signature"
TIMESTAMP_HEADER = "X-Vigil-Timestamp"


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Vigil-Signature`` value for a body sent at ``timestamp``."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


def signed_headers(secret: bytes, timestamp: int, body: bytes) -> dict[str, str]:
    """The JSON content type and both signature headers for ``body``."""
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }
