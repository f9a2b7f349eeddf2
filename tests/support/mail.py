"""A real SMTP server (aiosmtpd) that keeps what it receives for assertions."""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from vigil.devstack.ports import free_port


@dataclass
class Received:
    """One message as the server received it."""

    envelope_to: list[str]
    message: EmailMessage

    @property
    def body(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        return "" if part is None else str(part.get_content())

    @property
    def everything(self) -> str:
        """Every header and every body part, decoded, as one text."""
        parts = [f"{key}: {value}" for key, value in self.message.items()]
        parts += [
            str(part.get_content()) for part in self.message.walk() if not part.is_multipart()
        ]
        return "\n".join(parts)


@dataclass
class MailCatcher:
    """The messages received so far, with a bounded wait for the ones a test expects."""

    received: list[Received] = field(default_factory=list)
    _lock: threading.Condition = field(default_factory=threading.Condition)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.received.append(Received(list(envelope.rcpt_tos), message))
            self._lock.notify_all()
        return "250 OK"

    def matching(self, predicate: Callable[[Received], bool]) -> list[Received]:
        with self._lock:
            return [item for item in self.received if predicate(item)]

    def wait_for(
        self, predicate: Callable[[Received], bool], *, count: int = 1, timeout: float = 30.0
    ) -> list[Received]:
        """Block until ``count`` messages match; raise with what did arrive otherwise."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [item for item in self.received if predicate(item)]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    subjects = [str(item.message["Subject"]) for item in self.received]
                    raise AssertionError(
                        f"expected {count} matching message(s) within {timeout}s, got "
                        f"{len(found)}; all received: {subjects}"
                    )
                self._lock.wait(remaining)


@dataclass
class RefusingCatcher(MailCatcher):
    """Answers DATA with a temporary failure ``refusals`` times, then recovers."""

    refusals: int = 2
    refused: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.refused < self.refusals:
            self.refused += 1
            return "451 4.3.0 Try again later"
        return await super().handle_DATA(server, session, envelope)


@dataclass
class SlowCatcher(MailCatcher):
    """Takes ``delay`` seconds over each message: long enough, it stalls the sender."""

    delay: float = 3600.0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


def start_smtp_server(
    port: int, catcher: MailCatcher | None = None
) -> tuple[Controller, MailCatcher]:
    catcher = catcher if catcher is not None else MailCatcher()
    controller = Controller(catcher, hostname="127.0.0.1", port=port)
    controller.start()
    return controller, catcher


@contextmanager
def running_smtp_server(catcher: MailCatcher | None = None) -> Iterator[tuple[int, MailCatcher]]:
    """An SMTP server on a free loopback port for the block: its port and its mailbox."""
    port = free_port()
    controller, catcher = start_smtp_server(port, catcher)
    try:
        yield port, catcher
    finally:
        controller.stop()
