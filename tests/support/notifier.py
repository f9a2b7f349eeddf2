"""Building blocks for the notifier's tests: a roster, signals, a context, a movable clock."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from services.notifier import handlers
from services.notifier.adapters.deliveries import deliveries_of
from services.notifier.adapters.postgres import PostgresNotifierUnitOfWork
from services.notifier.adapters.smtp import SmtpSender
from services.notifier.domain.deliveries import as_sent
from services.notifier.domain.links import LinkClaims, LinkIssuer, LinkKey, LinkKeyRing, sign
from services.notifier.domain.messages import Delivery
from services.notifier.domain.planning import AckDeadlines
from services.notifier.domain.roster import Role, Roster
from services.notifier.entrypoints.delivery_worker import DeliveryWorker, Sender
from services.notifier.handlers import NotifierContext
from shared.events import (
    DataQualityIssueRaised,
    Envelope,
    SafetySignalRaised,
    SafetySignalReopened,
    SafetySignalResolved,
    wrap,
)
from shared.events.notifications import notification_stream

STUDY = "NCT-NOTIFY"
LINK_KEY = LinkKey("test-1", b"test-link-secret-0123456789abcdef")
LINK_KEYS = LinkKeyRing(LINK_KEY)
BASE_URL = "https://vigil.example"
T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


@dataclass
class ManualClock:
    """A clock that moves only when the test says so."""

    current: datetime = T0

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


def roster(*, primary_channels: list[dict[str, str]] | None = None) -> Roster:
    """Two sites; the site-01 investigator's channels can be chosen by the test."""
    return Roster.model_validate(
        {
            "study_id": STUDY,
            "study_contacts": [
                {"id": "mm", "name": "MM", "role": "medical_monitor", "email": "mm@x.org"}
            ],
            "sites": [
                {
                    "id": "S1",
                    "people": [
                        {
                            "id": "pi1",
                            "name": "PI 1",
                            "role": "investigator",
                            "channels": primary_channels or [{"email": "pi1@x.org"}],
                            "backup": "sub1",
                        },
                        {"id": "sub1", "name": "Sub 1", "role": "sub_investigator",
                         "email": "sub1@x.org"},
                    ],
                },
                {
                    "id": "S2",
                    "people": [
                        {"id": "pi2", "name": "PI 2", "role": "investigator",
                         "email": "pi2@x.org"},
                    ],
                },
            ],
        }
    )  # fmt: skip


def context(
    the_roster: Roster,
    clock: ManualClock | None = None,
    *,
    give_up: float = 900.0,
    keys: LinkKeyRing = LINK_KEYS,
) -> NotifierContext:
    return NotifierContext(
        rosters={the_roster.study_id: the_roster},
        deadlines=AckDeadlines(),
        links=LinkIssuer(keys, BASE_URL, timedelta(hours=168)),
        clock=clock or ManualClock(),
        give_up_after_seconds=give_up,
    )


def raised(site_id: str | None = "S1", **changes: Any) -> Envelope:
    """A signal as the rules engine publishes it, raised at T0."""
    values: dict[str, Any] = {
        "study_id": STUDY,
        "subject_id": f"T-{uuid.uuid4().hex[:8]}",
        "site_id": site_id,
        "signal_id": uuid.uuid4(),
        "rule_id": "anaemia-hb-le-9",
        "rule_title": "Haemoglobin at or below 9 g/dL",
        "rule_pack_version": "1",
        "input_event_ids": (uuid.uuid4(),),
        "computed_values": {},
        "analyte": "haemoglobin",
        "observed_value": Decimal("8.0"),
        "observed_unit": "g/dL",
        "threshold": "<= 9 g/dL",
        "collected_at": T0,
    }
    return wrap(SafetySignalRaised(**{**values, **changes}), source="/test/rules", time=T0)


def resolved(envelope: Envelope, clock: ManualClock, reason: str) -> Envelope:
    """The signal of ``envelope`` resolved now."""
    event = SafetySignalResolved(
        **lifecycle(signal_of(envelope)), reason=reason,
        input_event_ids=(uuid.uuid4(),), collected_at=clock.now(),
    )  # fmt: skip
    return wrap(event, source="/test/rules", time=clock.now())


def reopened(envelope: Envelope, clock: ManualClock) -> Envelope:
    """The signal of ``envelope`` reopened now (its resolving result was wrong)."""
    event = SafetySignalReopened(
        **lifecycle(signal_of(envelope)), reason="the 10.4 g/dL result was entered in error"
    )
    return wrap(event, source="/test/rules", time=clock.now())


def only_investigators(the_roster: Roster) -> Roster:
    """The roster with every kind of signal routed to the site investigators alone."""
    routing = {kind: (Role.INVESTIGATOR,) for kind in the_roster.routing}
    return the_roster.model_copy(update={"routing": routing})


# The study of the rule packs in studies/ (issue 15's routing runs the real rules on it).
RULES_STUDY = "NCT05262686"
DATA_MANAGER = {"id": "dm", "name": "DM", "role": "data_manager", "email": "dm@x.org"}


def study_roster(*, data_manager: bool = True) -> Roster:
    """The test roster for RULES_STUDY, with a data manager unless told otherwise."""
    base = roster().model_copy(update={"study_id": RULES_STUDY})
    if not data_manager:
        return base
    contacts = [p.model_dump(mode="json") for p in base.study_contacts]
    return Roster.model_validate(
        {**base.model_dump(mode="json"), "study_contacts": [*contacts, DATA_MANAGER]}
    )


def implausible(subject: str) -> Envelope:
    """An implausible haemoglobin value of RULES_STUDY: a notice for the data manager."""
    issue = DataQualityIssueRaised(
        study_id=RULES_STUDY,
        subject_id=subject,
        issue="implausible-value",
        detail="haemoglobin (LOINC 718-7): the value is negative, which cannot be physiological",
        related_event_id=uuid.uuid4(),
        rule_id="anaemia-hb-le-9",
    )
    return wrap(issue, source="/test/rules")


async def stream_types(connection: asyncpg.Connection, signal_id: uuid.UUID) -> list[str]:
    """The short type names of a notification stream, in order."""
    rows = await connection.fetch(
        "SELECT type FROM events WHERE stream_id = $1 ORDER BY stream_version",
        notification_stream(signal_id),
    )
    return [row["type"].split(".")[-2] for row in rows]


def signal_of(envelope: Envelope) -> SafetySignalRaised:
    payload = envelope.payload()
    assert isinstance(payload, SafetySignalRaised)
    return payload


def lifecycle(signal: SafetySignalRaised) -> dict[str, Any]:
    """The fields every later event in a signal's life repeats from the raised one."""
    fields = ("study_id", "subject_id", "signal_id", "rule_id", "rule_pack_version", "site_id")
    return {name: getattr(signal, name) for name in fields}


def in_db(pool: asyncpg.Pool) -> PostgresNotifierUnitOfWork:
    """The notifier's unit of work on the test's database."""
    return PostgresNotifierUnitOfWork(pool)


async def plan(pool: asyncpg.Pool, context: NotifierContext, *envelopes: Envelope) -> int:
    """What the signal consumer does with a batch, in one transaction."""
    return await handlers.handle_signals(in_db(pool), list(envelopes), context)


def email_worker(pool: asyncpg.Pool, port: int, context: NotifierContext) -> DeliveryWorker:
    """A delivery worker that sends e-mail through the SMTP server on ``port``."""
    return DeliveryWorker(
        pool,
        {"email": SmtpSender(f"smtp://127.0.0.1:{port}", "v@x.org")},
        rosters=context.rosters,
        links=context.links,
        retry_max_seconds=1,
        give_up_after_seconds=60,
    )


def mint(
    signal_id: uuid.UUID,
    person_id: str,
    *,
    key: LinkKey = LINK_KEY,
    issued_at: datetime = T0,
    valid_for: timedelta = timedelta(days=1),
    nonce: str = "minted-by-test",
) -> str:
    """A token signed with ``key`` saying whatever the test wants it to say."""
    claims = LinkClaims(
        key_id=key.key_id,
        signal_id=signal_id,
        person_id=person_id,
        issued_at=issued_at,
        expires_at=issued_at + valid_for,
        nonce=nonce,
    )
    return sign(key, claims)


async def link_planned_for(pool: asyncpg.Pool, context: NotifierContext, person_id: str) -> str:
    """The link a message planned for ``person_id`` carries when it is sent (the outbox
    holds its claims only)."""
    claims = await pool.fetchval(
        "SELECT link_claims::text FROM deliveries WHERE person_id = $1 "
        "AND link_claims IS NOT NULL ORDER BY created_at LIMIT 1",
        person_id,
    )
    assert claims is not None, f"no message with a link planned for {person_id}"
    return context.links.url(LinkClaims.model_validate_json(claims))


async def rendered(pool: asyncpg.Pool, context: NotifierContext, purpose: str) -> Delivery:
    """The first planned message with this purpose, rendered as it will be sent."""
    signal_id = await pool.fetchval(
        "SELECT signal_id FROM deliveries WHERE purpose = $1 LIMIT 1", purpose
    )
    assert signal_id is not None, f"no message planned for {purpose}"
    async with pool.acquire() as connection:
        planned = [d for d in await deliveries_of(connection, signal_id) if d.purpose == purpose]
    return as_sent(planned[0], context.links.message_link, context.rosters)


class CrashError(BaseException):
    """The process dies right after the server accepted the message."""


@dataclass
class CrashAfterSend:
    """A sender whose process dies once the server accepted the message, before the
    outcome is recorded: the one window in which a message is sent twice."""

    sender: Sender

    async def send(self, delivery: Delivery) -> str:
        await self.sender.send(delivery)
        raise CrashError
