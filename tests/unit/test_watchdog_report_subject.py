"""The watchdog's e-mail report folds its Subject as the notifier's alerts do: a subject of
70 to 77 characters is not moved whole onto a continuation line (read back, it would start
with a space)."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest
from aiosmtplib.email import flatten_message

from services.safety_rules.adapters.watchdog_channels import EmailReports
from shared.smtp import MESSAGE_POLICY, SmtpTransport


class KeptTransport(SmtpTransport):
    """Keeps the message instead of sending it (what is checked is the message itself)."""

    def __init__(self) -> None:
        super().__init__("smtp://127.0.0.1:1025", timeout=1.0)
        self.kept: list[EmailMessage] = []

    async def send(self, message: EmailMessage) -> str:
        self.kept.append(message)
        return "kept"


def read_back(message: EmailMessage) -> str:
    parsed = email.message_from_bytes(flatten_message(message), policy=email.policy.default)
    return str(parsed["Subject"])


@pytest.mark.parametrize("length", range(60, 90))
def test_a_subject_read_back_never_starts_with_a_space(length: int) -> None:
    subject = ("[Vigil] WATCHDOG: signals undelivered " + "x" * 100)[:length]
    message = EmailMessage(policy=MESSAGE_POLICY)
    message["Subject"] = subject
    message.set_content("body")
    assert read_back(message) == subject


class Report:
    key = "k"

    def subject(self) -> str:
        return "[Vigil] WATCHDOG: 3 protocol signals undelivered after 15 min (NCT05262686)"

    def text(self) -> str:
        return "signals: ..."


async def test_the_watchdog_report_is_made_with_the_folding_policy() -> None:
    transport = KeptTransport()
    reports = EmailReports(transport, "watchdog@vigil.example.org", ["ops@vigil.example.org"])
    await reports.send(Report())  # type: ignore[arg-type]
    (message,) = transport.kept
    assert read_back(message) == Report().subject()
