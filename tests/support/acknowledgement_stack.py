"""A real notifier process (`vigil notifier`) with a broker, a database and an SMTP server
of its own, for tests of message links and acknowledgement tokens through real sockets.

Signals are planned straight into its database with the same roster and keys the process
has; the process's delivery worker sends the mail, and the tests read each link from the
message a person received, as that person would. An e-mail carries no token (it leads to
the workspace); the token a message was issued with, which a webhook receiver would get,
is made from the claims the outbox keeps, with the process's keys.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from services.notifier import handlers
from services.notifier.adapters.postgres import PostgresNotifierUnitOfWork
from services.notifier.adapters.roster_files import load_rosters
from services.notifier.domain.links import LinkClaims, LinkIssuer, LinkKey, LinkKeyRing
from services.notifier.domain.planning import AckDeadlines
from shared.clock import SystemClock
from shared.events import Envelope, EventPayload, wrap
from shared.events.notifications import notification_stream
from tests.support import components
from tests.support.components import as_service_role, create_database, drop_database
from tests.support.mail import MailCatcher, Received, running_smtp_server
from tests.support.notifier import lifecycle, raised, signal_of
from tests.support.services import REPO, service_env, start_service
from vigil.devstack.ports import free_port

STUDY = "NCT05262686"
SITE = "PKUPH-01"
INVESTIGATOR = ("inv-0101", "pi.site01@vigil.example.org")
SUB_INVESTIGATOR = ("inv-0102", "subi.site01@vigil.example.org")
# the process signs with the first and still verifies the second; the third was removed
ACTIVE_KEY = LinkKey("owasp-2", secrets.token_urlsafe(48).encode())
RETIRED_KEY = LinkKey("owasp-1", secrets.token_urlsafe(48).encode())
REMOVED_KEY = LinkKey("owasp-0", secrets.token_urlsafe(48).encode())
VALID_FOR = timedelta(hours=168)
# the link every message carries: the signal's page in the workspace
LINK = re.compile(r"(?P<url>https?://[^\s\"<>]+/workspace/signals/(?P<signal>[0-9a-f-]{36}))")


def keys_setting(*keys: LinkKey) -> str:
    """The VIGIL_NOTIFIER_LINK_KEYS value for these keys, the first active."""
    return ",".join(f"{key.key_id}:{key.secret.decode()}" for key in keys)


@dataclass(frozen=True)
class AcknowledgementStack:
    url: str
    admin_dsn: str
    mailbox: MailCatcher
    context: handlers.NotifierContext  # what the process has: roster, keys, a real clock

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30)


@contextmanager
def acknowledgement_stack(postgres_dsn: str, log_dir: Path) -> Iterator[AcknowledgementStack]:
    """The notifier as a process, in production settings, on a database of its own."""
    dsn = asyncio.run(create_database(postgres_dsn, prefix="links"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        with components.kafka() as bootstrap, running_smtp_server() as (smtp_port, mailbox):
            env = service_env(
                database_url=as_service_role(dsn),
                kafka_bootstrap=bootstrap,
                smtp_port=smtp_port,
                VIGIL_NOTIFIER_PORT=str(port),
                VIGIL_NOTIFIER_LINK_KEYS=keys_setting(ACTIVE_KEY, RETIRED_KEY),
                VIGIL_NOTIFIER_PUBLIC_URL=url,
                VIGIL_ENVIRONMENT="production",
            )
            process = start_service("notifier", "notifier", port, env, log_dir)
            context = handlers.NotifierContext(
                rosters=load_rosters(REPO / "studies"),
                deadlines=AckDeadlines(),
                links=LinkIssuer(LinkKeyRing(ACTIVE_KEY, (RETIRED_KEY,)), url, VALID_FOR),
                clock=SystemClock(),
                give_up_after_seconds=900.0,
            )
            try:
                yield AcknowledgementStack(url, dsn, mailbox, context)
            finally:
                process.stop()
    finally:
        asyncio.run(drop_database(postgres_dsn, dsn))


def now() -> datetime:
    return datetime.now(UTC)


def raised_now(**changes: Any) -> Envelope:
    """A protocol-threshold signal at the investigator's site, raised now (so no deadline
    has passed and nothing escalates while the test runs)."""
    signal = signal_of(raised(SITE, study_id=STUDY, **changes))
    return wrap(signal, source="/test/rules", time=now())


def follow_up(envelope: Envelope, event_class: type[EventPayload], **fields: Any) -> Envelope:
    """A later event of the same signal (retracted, resolved, reopened), happening now."""
    event = event_class(**lifecycle(signal_of(envelope)), **fields)
    return wrap(event, source="/test/rules", time=now())


async def plan(pool: asyncpg.Pool, stack: AcknowledgementStack, *envelopes: Envelope) -> int:
    """What the process's signal consumer does with a batch."""
    uow = PostgresNotifierUnitOfWork(pool)
    return await handlers.handle_signals(uow, list(envelopes), stack.context)


def links_in(mail: Received, signal_id: uuid.UUID | None = None) -> list[str]:
    """The workspace links in a message (for one signal, when given)."""
    return [
        found["url"]
        for found in LINK.finditer(mail.body)
        if signal_id is None or found["signal"] == str(signal_id)
    ]


def mails_with_link(
    mailbox: MailCatcher, envelope: Envelope, address: str, *, count: int = 1
) -> list[Received]:
    """The messages with a link to the signal that ``address`` received, once ``count``
    came."""
    signal_id = signal_of(envelope).signal_id
    return mailbox.wait_for(
        lambda m: m.envelope_to == [address] and bool(links_in(m, signal_id)),
        count=count,
        timeout=60,
    )


async def tokens_sent(
    stack: AcknowledgementStack,
    pool: asyncpg.Pool,
    envelope: Envelope,
    address: str,
    *,
    count: int = 1,
) -> list[str]:
    """The tokens of the messages with a link to the signal that ``address`` received, in
    order, once ``count`` came: what a webhook receiver would have been given with each
    (an e-mail carries none), made from the outbox's claims with the process's keys."""
    mails_with_link(stack.mailbox, envelope, address, count=count)
    rows = await pool.fetch(
        "SELECT link_claims::text AS claims FROM deliveries "
        "WHERE signal_id = $1 AND recipient = $2 AND link_claims IS NOT NULL "
        "ORDER BY created_at",
        signal_of(envelope).signal_id,
        address,
    )
    return [stack.context.links.token(LinkClaims.model_validate_json(r["claims"])) for r in rows]


async def acknowledgement_types(pool: asyncpg.Pool, envelope: Envelope) -> list[str]:
    """The assessments recorded for the signal, in order."""
    rows = await pool.fetch(
        "SELECT payload->>'assessment' AS assessment FROM events "
        "WHERE stream_id = $1 AND type LIKE '%.acknowledged.v1' ORDER BY stream_version",
        notification_stream(signal_of(envelope).signal_id),
    )
    return [row["assessment"] for row in rows]


async def api_acknowledge(
    client: httpx.AsyncClient, envelope: Envelope, token: str, assessment: str, comment: str = ""
) -> httpx.Response:
    return await client.post(
        f"/v1/signals/{signal_of(envelope).signal_id}/acknowledgements",
        json={"token": token, "assessment": assessment, "comment": comment},
    )


async def page_acknowledge(
    client: httpx.AsyncClient, envelope: Envelope, fields: dict[str, str]
) -> httpx.Response:
    """A POST to the old link page, as its form sent it (now refused: 410)."""
    return await client.post(
        f"/signals/{signal_of(envelope).signal_id}/acknowledge",
        data=fields,
    )


async def page(client: httpx.AsyncClient, envelope: Envelope, token: str) -> httpx.Response:
    """The old link page, as a message sent before the workspace opens it (now 303)."""
    return await client.get(
        f"/signals/{signal_of(envelope).signal_id}/acknowledge", params={"token": token}
    )
