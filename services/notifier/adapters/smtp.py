"""Sending e-mail over SMTP with aiosmtplib."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate
from typing import Literal
from urllib.parse import unquote, urlsplit

import aiosmtplib

from services.notifier.domain.messages import Delivery

StartTls = Literal["auto", "require", "off"]


class SmtpSender:
    """Sends one delivery per call; the Message-ID is the delivery's stable id.

    ``smtp://host:port`` uses STARTTLS as ``starttls`` says (``auto``: when the server
    offers it), ``smtps://`` is TLS from the start; user and password in the URL
    authenticate.
    """

    def __init__(
        self, url: str, sender: str, *, timeout: float = 30.0, starttls: StartTls = "auto"
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"smtp", "smtps"} or not parts.hostname:
            raise ValueError(
                f"VIGIL_SMTP_URL must look like smtp://host:port or smtps://user:pass@host:port, "
                f"not {url!r}"
            )
        self._host = parts.hostname
        self._port = parts.port or (465 if parts.scheme == "smtps" else 25)
        self._tls = parts.scheme == "smtps"
        self._start_tls: bool | None = {"auto": None, "require": True, "off": False}[starttls]
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self._sender = sender
        self._timeout = timeout

    def build(self, delivery: Delivery) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = delivery.recipient
        message["Subject"] = delivery.subject_line
        message["Message-ID"] = delivery.message_id
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["X-Vigil-Signal-Id"] = str(delivery.signal_id)
        message.set_content(delivery.body_text)
        if delivery.body_html:
            message.add_alternative(delivery.body_html, subtype="html")
        return message

    async def send(self, delivery: Delivery) -> str:
        """Hand the message to the server; returns its answer to DATA."""
        _, answer = await aiosmtplib.send(
            self.build(delivery),
            hostname=self._host,
            port=self._port,
            use_tls=self._tls,
            start_tls=False if self._tls else self._start_tls,
            username=self._username,
            password=self._password,
            timeout=self._timeout,
        )
        return answer
