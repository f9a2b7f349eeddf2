"""Handing an e-mail to an SMTP server (aiosmtplib): the notifier's alerts and the
watchdog's reports, each to its own server."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Literal
from urllib.parse import unquote, urlsplit

import aiosmtplib

StartTls = Literal["auto", "require", "off"]


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
