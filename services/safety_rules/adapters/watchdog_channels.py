"""The watchdog's second channel: its own SMTP server and address, or a webhook, from the
``VIGIL_WATCHDOG_*`` settings; nothing the notifier uses."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from email.utils import formatdate

import httpx

from services.safety_rules.domain.undelivered import WatchdogReport
from services.safety_rules.handlers.ports import ReportChannel
from services.settings import VigilSettings
from shared.message_text import header_value, safe_address
from shared.signed_webhook import signed_headers
from shared.smtp import MESSAGE_POLICY, SmtpTransport


class ReportRefused(Exception):
    """The channel's receiver did not take the report."""


class EmailReports:
    """The report as an e-mail to the watchdog's own addresses through its own server."""

    name = "email"

    def __init__(self, transport: SmtpTransport, sender: str, recipients: Sequence[str]) -> None:
        self._transport = transport
        self._sender = safe_address(sender, setting="VIGIL_WATCHDOG_EMAIL_FROM")
        self._recipients = [safe_address(r, setting="VIGIL_WATCHDOG_EMAIL_TO") for r in recipients]

    async def send(self, report: WatchdogReport) -> None:
        message = EmailMessage(policy=MESSAGE_POLICY)
        message["From"] = self._sender
        message["To"] = ", ".join(self._recipients)
        message["Subject"] = report.subject()
        message["Date"] = formatdate(localtime=False, usegmt=True)
        message["X-Vigil-Watchdog"] = header_value(report.key)
        message.set_content(report.text())
        await self._transport.send(message)


class WebhookReports:
    """The report as a signed JSON POST (the notifier's signature scheme)."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        timeout: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = url
        self._secret = secret
        self._timeout = timeout
        self._clock = clock

    async def send(self, report: WatchdogReport) -> None:
        body = json.dumps(report.document(), sort_keys=True).encode()
        headers = {
            **signed_headers(self._secret, int(self._clock()), body),
            "Idempotency-Key": report.key,
        }
        async with httpx.AsyncClient(timeout=self._timeout) as client:
            response = await client.post(self._url, content=body, headers=headers)
        if not response.is_success:
            raise ReportRefused(f"the watchdog webhook answered HTTP {response.status_code}")


def report_channels(settings: VigilSettings) -> list[ReportChannel]:
    """The channels the settings configure (none: the watchdog only measures); a half
    configured channel stops the start with the setting named."""
    timeout = settings.notifier_send_timeout_seconds
    channels: list[ReportChannel] = []
    if settings.watchdog_email_to or settings.watchdog_smtp_url:
        if not (settings.watchdog_email_to and settings.watchdog_smtp_url):
            raise RuntimeError(
                "the watchdog's e-mail needs both VIGIL_WATCHDOG_SMTP_URL (its own SMTP "
                "server) and VIGIL_WATCHDOG_EMAIL_TO (who is told)"
            )
        recipients = [r.strip() for r in settings.watchdog_email_to.split(",") if r.strip()]
        transport = SmtpTransport(
            settings.watchdog_smtp_url, timeout=timeout, setting="VIGIL_WATCHDOG_SMTP_URL"
        )
        channels.append(EmailReports(transport, settings.watchdog_email_from, recipients))
    if settings.watchdog_webhook_url:
        if settings.watchdog_webhook_secret is None:
            raise RuntimeError(
                "VIGIL_WATCHDOG_WEBHOOK_URL is set: set VIGIL_WATCHDOG_WEBHOOK_SECRET too, the "
                "key its receiver checks the X-Vigil-Signature header with"
            )
        secret = settings.watchdog_webhook_secret.get_secret_value().encode()
        channels.append(WebhookReports(settings.watchdog_webhook_url, secret, timeout=timeout))
    return channels
