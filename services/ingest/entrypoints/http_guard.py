"""Every HTTP write passes here before any route sees it: who sends (an API key), how
often (per source; per address while unauthenticated) and how much (the body cap).

An ASGI middleware rather than a route dependency, so no route can be added without it,
and so a body is counted as it streams in: a Content-Length over the cap is refused at
once, a chunked body is cut where it crosses the cap. Refused requests are kept as
rejected receipts (their first bytes) and counted; only an unauthenticated client over
its rate is merely counted, because keeping what it sends is what the limit prevents.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.ingest import metrics
from services.ingest.adapters.key_cache import ApiKeyCache, KeysUnavailable
from services.ingest.domain.api_keys import NotAuthenticated
from services.ingest.domain.principals import Principal
from services.ingest.domain.rate_limit import RateLimiter
from services.ingest.entrypoints.http_body import (
    KEPT_PREFIX_BYTES,
    Disconnected,
    client_key,
    read_body,
    read_prefix,
)
from services.ingest.entrypoints.http_refusals import channel_of, refusal
from services.ingest.handlers.intake import Intake
from services.ingest.handlers.ports import Receipt, StorageUnavailable

log = structlog.get_logger(__name__)
READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# How long a refused request's first bytes are waited for.
PREFIX_WAIT_SECONDS = 2.0
REALM = 'Bearer realm="vigil-ingest"'


@dataclass(frozen=True)
class Limits:
    """The bounds of one HTTP write (see the VIGIL_INGEST_* settings)."""

    max_body_bytes: int
    body_timeout_seconds: float
    per_source: RateLimiter
    per_unauthenticated_client: RateLimiter


def principal_of(request: Request) -> Principal:
    """The sender the WriteGuard authenticated; a write that skipped it is a bug."""
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        raise RuntimeError("a write reached a route without passing the WriteGuard")
    return principal


class WriteGuard:
    """ASGI middleware in front of ingest's routes; reads pass straight through."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: Callable[[], ApiKeyCache],
        intake: Callable[[], Intake],
        limits: Limits,
    ) -> None:
        self._app = app
        self._keys = keys
        self._intake = intake
        self._limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in READ_ONLY_METHODS:
            await self._app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        channel = channel_of(scope["path"])
        credential = (headers.get("authorization"), headers.get("x-api-key"))
        auth = self._keys().authenticate(*credential)
        if isinstance(auth, NotAuthenticated) and auth.reason in (
            "unknown-key",
            "no-keys-configured",
        ):
            auth = await self._keys().authenticate_fresh(*credential)
        if isinstance(auth, KeysUnavailable):
            metrics.record_ingest_rejected(channel, "unavailable")
            response = refusal(
                channel, 503, "Temporarily unavailable", auth.detail, code="unavailable"
            )
            await response(scope, receive, send)
            return
        if isinstance(auth, NotAuthenticated):
            if await self._unauthenticated_allowed(scope, receive, send):
                await self._unauthenticated(scope, receive, send, headers, auth)
            return
        principal = auth.principal
        wait = self._limits.per_source.try_acquire(principal.source)
        if wait is not None:
            await self._refuse(
                scope,
                receive,
                send,
                headers,
                429,
                "Too many requests",
                f"this source sends faster than VIGIL_INGEST_RATE_PER_SOURCE allows; "
                f"send again after {wait:.0f} s",
                code="rate-limited",
                principal=principal,
                extra_headers={"Retry-After": f"{wait:.0f}"},
            )
            return
        await self._bounded(scope, receive, send, headers, principal)

    async def _unauthenticated_allowed(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Whether this address may make another attempt without a valid key now; if
        not, it is answered 429 and only counted: keeping what it sends without bound is
        what this limit prevents."""
        channel = channel_of(scope["path"])
        wait = self._limits.per_unauthenticated_client.try_acquire(client_key(scope))
        if wait is None:
            return True
        metrics.record_ingest_rejected(channel, "rate-limited-unauthenticated")
        response = refusal(
            channel,
            429,
            "Too many requests",
            f"too many requests without a valid API key from this address; send again "
            f"after {wait:.0f} s, with a key",
            code="rate-limited-unauthenticated",
            headers={"Retry-After": f"{wait:.0f}"},
        )
        await response(scope, receive, send)
        return False

    async def _unauthenticated(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        auth: NotAuthenticated,
    ) -> None:
        challenge = (
            REALM if auth.reason == "missing-credential" else f'{REALM}, error="invalid_token"'
        )
        await self._refuse(
            scope,
            receive,
            send,
            headers,
            401,
            "Unauthenticated",
            auth.detail,
            code=auth.reason,
            principal=None,
            extra_headers={"WWW-Authenticate": challenge},
        )

    async def _bounded(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        principal: Principal,
    ) -> None:
        cap = self._limits.max_body_bytes
        declared = headers.get("content-length", "")
        body: bytes | None = None  # over the cap at once: only its first bytes will be read
        over = declared.isdigit() and int(declared) > cap
        if not over:
            try:
                body, over = await read_body(receive, cap, self._limits.body_timeout_seconds)
            except Disconnected:
                return
            except TimeoutError:
                await self._refuse(
                    scope,
                    receive,
                    send,
                    headers,
                    408,
                    "Request timeout",
                    f"the body did not arrive within VIGIL_INGEST_BODY_TIMEOUT_SECONDS "
                    f"({self._limits.body_timeout_seconds:g} s)",
                    code="body-timeout",
                    principal=principal,
                    prefix=b"",
                )
                return
        if over or body is None:
            await self._refuse(
                scope,
                receive,
                send,
                headers,
                413,
                "Content too large",
                f"the body is larger than VIGIL_INGEST_MAX_BODY_BYTES ({cap} bytes); send it "
                "in smaller requests",
                code="body-too-large",
                principal=principal,
                prefix=body,
            )
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # the app waits for the disconnect, if anything
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        state = {**scope.get("state", {}), "principal": principal}
        await self._app({**scope, "state": state}, replay, send)

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        status: int,
        title: str,
        detail: str,
        *,
        code: str,
        principal: Principal | None,
        extra_headers: dict[str, str] | None = None,
        prefix: bytes | None = None,
    ) -> None:
        """Keep the request's first bytes as a rejected receipt, count it, answer."""
        channel, path = channel_of(scope["path"]), scope["path"]
        truncated = True
        if prefix is None:
            prefix, truncated = await read_prefix(receive, KEPT_PREFIX_BYTES, PREFIX_WAIT_SECONDS)
        client = scope.get("client")
        receipt = Receipt(
            channel=channel,
            source=f"{client[0] if client else 'unknown'} {scope['method']} {path}",
            content_type=headers.get("content-type"),
            raw=prefix,
            outcome="rejected",
            reason=f"{status} {code}: {detail}",
            raw_truncated=truncated,
        )
        origin = f"{'fhir' if channel == 'fhir' else 'http'} {path}"
        try:
            await self._intake().reject(receipt, origin, reason_code=code, principal=principal)
        except StorageUnavailable as error:
            # a refusal is never the only trace of a message: not kept, so not refused
            # either; the sender sends again
            log.error("ingest.refusal_not_recorded", code=code, error=str(error))
            status, title, code, extra_headers = 503, "Temporarily unavailable", "unavailable", {}
            detail = f"{error}. Send the request again."
        log.warning(
            "ingest.refused",
            status=status,
            code=code,
            channel=channel,
            source=principal.source if principal else None,
        )
        response = refusal(channel, status, title, detail, code=code, headers=extra_headers)
        await response(scope, receive, send)
