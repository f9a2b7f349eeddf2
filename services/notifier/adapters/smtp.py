"""Sending e-mail over SMTP with aiosmtplib."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate

from services.notifier.domain.messages import Delivery
from shared.message_text import header_value, safe_address
from shared.smtp import MESSAGE_POLICY, SmtpTransport, StartTls


class SmtpSender:
    """Sends one delivery per call; the Message-ID is the delivery's stable id.

    ``smtp://host:port`` uses STARTTLS as ``starttls`` says (``auto``: when the server
    offers it), ``smtps://`` is TLS from the start; user and password in the URL
    authenticate.
    """

    def __init__(
        self, url: str, sender: str, *, timeout: float = 30.0, starttls: StartTls = "auto"
    ) -> None:
        self._transport = SmtpTransport(url, timeout=timeout, starttls=starttls)
        self._sender = sender

    def build(self, delivery: Delivery) -> EmailMessage:
        """The e-mail of one delivery. Every header value is one line (a delivery planned
        before subjects were made safe is made safe here); non-ASCII text is encoded by
        the e-mail package (RFC 2047)."""
        message = EmailMessage(policy=MESSAGE_POLICY)
        message["From"] = safe_address(self._sender, setting="VIGIL_SMTP_FROM")
        message["To"] = safe_address(delivery.recipient, setting="the study roster")
        message["Subject"] = header_value(delivery.subject_line)
        message["Message-ID"] = header_value(delivery.message_id)
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["X-Vigil-Signal-Id"] = str(delivery.signal_id)
        message.set_content(delivery.body_text)
        if delivery.body_html:
            message.add_alternative(delivery.body_html, subtype="html")
        return message

    async def send(self, delivery: Delivery) -> str:
        """Hand the message to the server; returns its answer to DATA."""
        return await self._transport.send(self.build(delivery))
