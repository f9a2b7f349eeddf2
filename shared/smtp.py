"""Handing an e-mail to an SMTP server (aiosmtplib): the notifier's alerts and the
watchdog's reports, each to its own server."""

from __future__ import annotations

from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import EmailPolicy, Policy
from typing import Literal, cast
from urllib.parse import unquote, urlsplit

import aiosmtplib

StartTls = Literal["auto", "require", "off"]


class _Subject(UnstructuredHeader):
    """A Subject folded without an empty first line.

    The e-mail package (CPython 3.11 here: ``_header_value_parser._refold_parse_tree``)
    moves a whole unstructured value that is too long to follow ``Subject: `` on the
    78-character line but short enough to fill one continuation line (70 to 77
    characters) onto that continuation line: ``Subject:`` CRLF `` [Vigil] ...``.
    Unfolded, the value starts with a space; mail clients (and Python's own parser) show
    it. Such a value is joined back onto the first line (at most 86 characters: inside
    RFC 5322's 998)."""

    @classmethod
    def _folded_without_empty_first_line(cls, name: str, folded: str, linesep: str) -> str:
        empty_first_line = f"{name}:{linesep} "
        if folded.startswith(empty_first_line):
            return f"{name}: " + folded[len(empty_first_line) :]
        return folded

    def fold(self, *, policy: Policy) -> str:
        # the registry mixes this class into a BaseHeader, which names the header
        header = cast(BaseHeader, self)
        folded = BaseHeader.fold(header, policy=policy)
        return self._folded_without_empty_first_line(header.name, folded, policy.linesep)


def _headers() -> HeaderRegistry:
    registry = HeaderRegistry()
    registry.map_to_type("subject", cast(type[BaseHeader], _Subject))
    return registry


#: the message's own policy makes its header objects; whatever policy the transport
#: flattens with (aiosmtplib: ``email.policy.SMTP``) folds the Subject through ``_Subject``
MESSAGE_POLICY = EmailPolicy(header_factory=_headers())


class SmtpTransport:
    """One SMTP server, as a URL: ``smtp://host:port`` uses STARTTLS as ``starttls`` says
    (``auto``: when the server offers it), ``smtps://`` is TLS from the start; user and
    password in the URL authenticate. ``setting`` names where the URL came from, for the
    error that says how to fix it."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        starttls: StartTls = "auto",
        setting: str = "VIGIL_SMTP_URL",
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"smtp", "smtps"} or not parts.hostname:
            raise ValueError(
                f"{setting} must look like smtp://host:port or smtps://user:pass@host:port, "
                f"not {url!r}"
            )
        self._host = parts.hostname
        self._port = parts.port or (465 if parts.scheme == "smtps" else 25)
        self._tls = parts.scheme == "smtps"
        self._start_tls: bool | None = {"auto": None, "require": True, "off": False}[starttls]
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self._timeout = timeout

    async def send(self, message: EmailMessage) -> str:
        """Hand the message to the server; returns its answer to DATA."""
        _, answer = await aiosmtplib.send(
            message,
            hostname=self._host,
            port=self._port,
            use_tls=self._tls,
            start_tls=False if self._tls else self._start_tls,
            username=self._username,
            password=self._password,
            timeout=self._timeout,
        )
        return answer
