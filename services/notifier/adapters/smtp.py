"""Sending e-mail over SMTP with aiosmtplib."""

from __future__ import annotations

from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import EmailPolicy, Policy
from email.utils import formatdate
from typing import cast

from services.notifier.domain.messages import Delivery
from shared.message_text import header_value, safe_address
from shared.smtp import SmtpTransport, StartTls


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
