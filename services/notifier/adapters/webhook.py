"""Sending a delivery as a signed JSON POST (webhook).

Headers: ``X-Vigil-Timestamp`` (Unix seconds), ``X-Vigil-Signature``
(``v1=`` hex HMAC-SHA256 over ``"{timestamp}.{body}"`` with the shared secret), and
``Idempotency-Key`` (the delivery id, the same on every repeat). A receiver refuses a
timestamp older than a few minutes, so a captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

import httpx

from services.notifier.domain.messages import Delivery

SIGNATURE_HEADER = "X-Vigil-Signature"
TIMESTAMP_HEADER = "X-Vigil-Timestamp"


class WebhookRejected(Exception):
    """The receiver answered with something other than 2xx."""


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Vigil-Signature`` value for a body sent at ``timestamp``."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


class WebhookSender:
    """POSTs the delivery's JSON body with signature and idempotency headers."""

    def __init__(
        self,
        secret: bytes,
        *,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._secret = secret
        self._clock = clock
        self._client = client or httpx.AsyncClient(timeout=timeout)

    async def send(self, delivery: Delivery) -> str:
        body = delivery.body_text.encode()
        timestamp = int(self._clock())
        response = await self._client.post(
            delivery.recipient,
            content=body,
            headers={
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: str(timestamp),
                SIGNATURE_HEADER: signature(self._secret, timestamp, body),
                "Idempotency-Key": str(delivery.delivery_id),
                "X-Vigil-Message-Id": delivery.message_id,
            },
        )
        if not response.is_success:
            raise WebhookRejected(f"HTTP {response.status_code}: {response.text[:200]}")
        return f"HTTP {response.status_code}"

    async def close(self) -> None:
        await self._client.aclose()
