"""Sending a delivery as a signed JSON POST (webhook).

Headers: ``X-Vigil-Timestamp`` (Unix seconds), ``X-Vigil-Signature``
(``v1=`` hex HMAC-SHA256 over ``"{timestamp}.{body}"`` with the shared secret), and
``Idempotency-Key`` (the delivery id, the same on every repeat). A receiver refuses a
timestamp older than a few minutes, so a captured request cannot be replayed later.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from services.notifier.domain.messages import Delivery
from shared.message_text import header_value
from shared.signed_webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature, signed_headers

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "WebhookRejected", "WebhookSender", "signature"]


class WebhookRejected(Exception):
    """The receiver answered with something other than 2xx."""


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

    def request(self, delivery: Delivery) -> httpx.Request:
        """The signed POST of one delivery; header values are Vigil's own ids and times,
        each kept to one line."""
        body = delivery.body_text.encode()
        timestamp = int(self._clock())
        headers = {
            **signed_headers(self._secret, timestamp, body),
            "Idempotency-Key": str(delivery.delivery_id),
            "X-Vigil-Message-Id": header_value(delivery.message_id),
        }
        return self._client.build_request("POST", delivery.recipient, content=body, headers=headers)

    async def send(self, delivery: Delivery) -> str:
        response = await self._client.send(self.request(delivery))
        if not response.is_success:
            raise WebhookRejected(f"HTTP {response.status_code}: {response.text[:200]}")
        return f"HTTP {response.status_code}"

    async def close(self) -> None:
        await self._client.aclose()
