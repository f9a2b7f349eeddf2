"""What every response of the acknowledgement page and API carries, and how large a
request to them may be.

The page is opened from an e-mail with a live token in its address, so nothing may keep
or leak it: no cache (``Cache-Control: no-store``), no ``Referer`` to another site
(``Referrer-Policy: no-referrer``), no framing (``frame-ancestors 'none'``,
``X-Frame-Options: DENY``), no script at all and only the page's own stylesheet, allowed
by its hash (``default-src 'none'``), forms posting only back here
(``form-action 'self'``), no ``<base>`` redirecting its relative addresses
(``base-uri 'none'``), no content sniffing (``X-Content-Type-Options: nosniff``).

An ASGI middleware, so that every answer on these paths has the headers, FastAPI's own
validation errors included, and a body is refused (413) once it passes the cap: what
follows is read and dropped (up to 1 MiB, so the sender sees the answer), never kept.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.notifier.entrypoints.acknowledgement_page import MAX_FORM_BYTES, STYLE_SOURCE

PATHS = ("/signals/", "/v1/signals/", "/workspace")
WORKSPACE = "/workspace"
# an acknowledgement is a token, an assessment and a 4,000-character comment
MAX_BODY_BYTES = MAX_FORM_BYTES
# how much of a refused body is read (and dropped) so that its sender sees the 413
DRAIN_BYTES = 1024 * 1024

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        f"style-src {STYLE_SOURCE}",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
]
# The workspace: its own stylesheet and script files, charts inline as SVG, fetches (the
# inbox's live updates) only to this server; nothing inline runs.
WORKSPACE_CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "style-src 'self'",
        "script-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
WORKSPACE_HEADERS: list[tuple[bytes, bytes]] = [
    (name, WORKSPACE_CONTENT_SECURITY_POLICY.encode() if name == b"content-security-policy"
     else value)
    for name, value in SECURITY_HEADERS
]  # fmt: skip
_NAMES = {name for name, _ in SECURITY_HEADERS}


class AcknowledgementHttpPolicy:
    """Security headers on, and a body cap for, the acknowledgement page and API."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope["path"]).startswith(PATHS):
            await self.app(scope, receive, send)
            return

        headers = (
            WORKSPACE_HEADERS if str(scope["path"]).startswith(WORKSPACE) else SECURITY_HEADERS
        )

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _NAMES]
                message = {**message, "headers": kept + headers}
            await send(message)

        if scope["method"] not in {"GET", "HEAD", "OPTIONS"}:
            body = await self._bounded_body(scope, receive)
            if body is None:
                await self._too_large(scope, send_with_headers)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send_with_headers)

    async def _bounded_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None once it is larger than the cap (never kept beyond it)."""
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            if declared <= DRAIN_BYTES:
                await _drain(receive, DRAIN_BYTES)
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; the app sees what there was
            chunk = message.get("body", b"")
            more = bool(message.get("more_body", False))
            size += len(chunk)
            if size > self.max_body_bytes:
                if more:
                    await _drain(receive, DRAIN_BYTES)
                return None
            chunks.append(chunk)
            if not more:
                break
        return b"".join(chunks)

    async def _too_large(self, scope: Scope, send: Send) -> None:
        detail = f"the request body is larger than {self.max_body_bytes} bytes"
        if str(scope["path"]).startswith("/v1/"):
            content_type = b"application/problem+json"
            body = json.dumps(
                {"type": "about:blank", "title": "Request too large", "status": 413,
                 "detail": detail}
            ).encode()  # fmt: skip
        else:
            content_type = b"text/plain; charset=utf-8"
            body = f"Request too large: {detail}.".encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    """The declared body size; an unreadable one counts as too large."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return DRAIN_BYTES + 1
    return None


async def _drain(receive: Receive, limit: int) -> None:
    """Read and drop the rest of a refused body, up to ``limit`` bytes: a client still
    sending then reads the 413 instead of a connection reset under its feet."""
    drained = 0
    while drained <= limit:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        drained += len(message.get("body", b""))


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body read already, then the client's own."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
