"""The soak's SMTP server (aiosmtpd): keeps every message with the time it arrived, and can
be taken away for an outage and brought back on the same port."""

from __future__ import annotations

import email
import email.policy
import threading
import time
from dataclasses import dataclass
from typing import Any

from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class Mail:
    """One message as the server accepted it."""

    received_at: float  # wall clock (time.time)
    recipients: tuple[str, ...]  # the envelope's RCPT TO
    message_id: str
    signal_id: str | None  # X-Vigil-Signal-Id
    subject: str


class _Keeper:
    """aiosmtpd handler: parse the headers the checker needs, keep the rest out."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mails: list[Mail] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        mail = Mail(
            received_at=time.time(),
            recipients=tuple(str(r).lower() for r in envelope.rcpt_tos),
            message_id=str(message.get("Message-ID", "")).strip(),
            signal_id=message.get("X-Vigil-Signal-Id"),
            subject=str(message.get("Subject", "")),
        )
        with self.lock:
            self.mails.append(mail)
        return "250 OK"


class Mailbox:
    """An SMTP server on 127.0.0.1:``port``; ``stop`` makes connections fail (an outage)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._keeper = _Keeper()
        self._controller: Controller | None = None

    @property
    def up(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        if self._controller is None:
            controller = Controller(self._keeper, hostname="127.0.0.1", port=self.port)
            controller.start()
            self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def received(self) -> list[Mail]:
        with self._keeper.lock:
            return list(self._keeper.mails)
