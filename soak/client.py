"""The soak's one way of talking to ingest: HTTP (JSON and FHIR) and MLLP, with a credential.

Everything the soak sends goes through :class:`IngestClient`, so a change in how senders
authenticate (API keys on HTTP, TLS and client certificates on MLLP) is an edit here and
in :class:`Credential` only. The client says what the answer means for a sender, in the
protocol's own terms, and leaves the decision to resend to the caller:

- ``acknowledged``: 2xx, or HL7 ``AA``: ingest took responsibility for the message;
- ``try-again``: 429, 5xx, a connection that failed, or ``AE`` with error 207
  (application error: ingest's "temporarily unavailable"): a lab sends the same message
  again;
- ``refused``: any other 4xx, ``AR``, or ``AE`` naming a problem with the message;
- ``no-answer``: the MLLP connection closed, or stayed silent past the timeout, without
  an acknowledgement.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field
from typing import Literal

import httpx

from soak.messages import END_BLOCK, HttpRequest, MllpMessage, Wire

Verdict = Literal["acknowledged", "try-again", "refused", "no-answer"]
TEMPORARY_HL7_ERRORS = frozenset({"207"})  # HL7 table 0357: application internal error
TRY_AGAIN_STATUS = frozenset({429, 500, 502, 503, 504})


class CredentialRefused(RuntimeError):
    """Ingest answered 401 or 403: the soak's credential is missing or wrong."""


@dataclass(frozen=True)
class Credential:
    """Who the soak sends as.

    ``api_key`` goes in ``Authorization: Bearer <key>`` on every HTTP write; ``mllp_tls``
    (a client context, with the sender's certificate loaded) makes the MLLP connection
    TLS. Both empty: ingest asks for nothing (today's code, or a development stack that
    accepts loopback senders).
    """

    api_key: str | None = None
    mllp_tls: ssl.SSLContext | None = field(default=None, compare=False)

    def http_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}


@dataclass(frozen=True)
class Answer:
    verdict: Verdict
    detail: str  # the status code, the HL7 acknowledgement code and errors, or the failure
    retry_after: float | None = None


def hl7_answer(ack: bytes) -> Answer:
    """What an HL7 ACK says: MSA-1, and the ERR codes (ERR-3.1) when it is not AA."""
    segments = ack.decode("utf-8", errors="replace").strip("\x0b\x1c\r\n").split("\r")
    msa = next((s.split("|") for s in segments if s.startswith("MSA|")), None)
    if msa is None or len(msa) < 2:
        return Answer("refused", "an answer without MSA")
    code = msa[1]
    errors = [
        s.split("|")[3].split("^")[0]
        for s in segments
        if s.startswith("ERR|") and s.count("|") >= 3
    ]
    detail = f"{code} {','.join(errors)}".strip()
    if code in ("AA", "CA"):
        return Answer("acknowledged", detail)
    if code in ("AE", "CE") and (not errors or set(errors) <= TEMPORARY_HL7_ERRORS):
        return Answer("try-again", detail)
    return Answer("refused", detail)


def http_answer(response: httpx.Response) -> Answer:
    status = response.status_code
    if status in (401, 403):
        raise CredentialRefused(
            f"ingest answered {status} to {response.request.url.path}: give the soak a valid "
            "credential (see soak.run.credential_for)"
        )
    if 200 <= status < 300:
        return Answer("acknowledged", str(status))
    if status in TRY_AGAIN_STATUS:
        after = response.headers.get("retry-after")
        return Answer("try-again", str(status), float(after) if after and after.isdigit() else None)
    return Answer("refused", str(status))


class IngestClient:
    """One sender's connections to ingest: an HTTP client, and an MLLP connection kept
    open from one message to the next (as a laboratory system keeps it)."""

    def __init__(
        self,
        http_url: str,
        mllp_address: tuple[str, int],
        credential: Credential,
        *,
        timeout: float = 15.0,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=http_url, timeout=timeout, headers=credential.http_headers()
        )
        self._mllp_address = mllp_address
        self._tls = credential.mllp_tls
        self._timeout = timeout
        self._connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def send(self, wire: Wire, *, fresh: bool = False) -> Answer:
        """Send one message and read its answer; ``fresh``: on a new MLLP connection."""
        if isinstance(wire, HttpRequest):
            return await self._post(wire)
        if fresh:
            await self._disconnect()
        return await self._exchange(wire)

    async def _post(self, request: HttpRequest) -> Answer:
        try:
            response = await self._http.post(
                request.path, content=request.body, headers={"content-type": request.content_type}
            )
        except httpx.TransportError as error:
            return Answer("try-again", f"{type(error).__name__}: {error}"[:200])
        return http_answer(response)

    async def _exchange(self, message: MllpMessage) -> Answer:
        try:
            reader, writer = await self._connect()
        except (OSError, TimeoutError) as error:
            return Answer("try-again", f"cannot connect: {error!r}"[:200])
        try:
            writer.write(message.frame)
            await writer.drain()
            ack = await asyncio.wait_for(reader.readuntil(END_BLOCK + b"\r"), self._timeout)
        except TimeoutError:
            await self._disconnect()
            return Answer("no-answer", f"no answer within {self._timeout:.0f}s")
        except asyncio.IncompleteReadError:
            await self._disconnect()
            return Answer("no-answer", "connection closed without an answer")
        except (OSError, asyncio.LimitOverrunError) as error:
            await self._disconnect()
            return Answer("try-again", f"connection failed: {error!r}"[:200])
        return hl7_answer(ack)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._connection is None or self._connection[1].is_closing():
            host, port = self._mllp_address
            self._connection = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=self._tls), self._timeout
            )
        return self._connection

    async def _disconnect(self) -> None:
        if self._connection is not None:
            writer = self._connection[1]
            self._connection = None
            writer.close()
            # the peer may be gone already: nothing more to close then
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 2)

    async def close(self) -> None:
        await self._disconnect()
        await self._http.aclose()
