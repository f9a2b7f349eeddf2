"""No broker is the only copy of a signal: a signal the broker forgot is still told, once,
from the audit log; one the broker did deliver is not told twice, however many notifier
instances read the log (real processes, a real Tansu restarted fresh, PostgreSQL, SMTP)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from services.notifier.adapters.roster_files import load_roster
from services.notifier.domain.roster import SITE_ALERT_ROLES
from tests.support import components
from tests.support.api_keys import IssuedKey, issue_api_key
from tests.support.mail import MailCatcher, Received, running_smtp_server
from tests.support.scrape import metric_value
from tests.support.services import METRICS_TOKEN, REPO, service_env, start_service
from tests.support.waiting import eventually
from vigil.devstack.ports import free_port
from vigil.devstack.supervisor import ManagedProcess

pytestmark = pytest.mark.integration
STUDY = "NCT05262686"
SITE = "PKUPH-01"
OPERATOR = {"Authorization": f"Bearer {METRICS_TOKEN}"}
RAISED = "org.vigil.safety_signal.raised.v1"
# from the notifier's start to the e-mail: its default grace (10 s) and poll (5 s), its
# consumer group forming, and a busy machine
TOLD_WITHIN_SECONDS = 90


def site_investigators() -> set[str]:
    roster = load_roster(REPO / "studies" / STUDY / "roster.yaml")
    site = next(site for site in roster.sites if site.id == SITE)
    return {str(p.email) for p in site.people if p.role in SITE_ALERT_ROLES}


async def post(url: str, key: IssuedKey, path: str, body: dict[str, Any]) -> str:
    """Every write to ingest goes through here (it carries the API key); returns the
    event id ingest acknowledged."""
    async with httpx.AsyncClient(base_url=url, headers=key.headers, timeout=30) as client:
        response = await client.post(path, json=body)
    assert response.status_code == 202, response.text
    event_id: str = response.json()["event_ids"][0]
    return event_id


@dataclass
class Stack:
    """The test's own broker, database, SMTP server and services."""

    db: asyncpg.Connection
    key: IssuedKey
    env: dict[str, str]
    log_dir: Path
    mailbox: MailCatcher
    ingest_url: str

    def notifier(self, name: str = "notifier") -> tuple[ManagedProcess, str]:
        port = free_port()
        env = {**self.env, "VIGIL_NOTIFIER_PORT": str(port)}
        return start_service(name, "notifier", port, env, self.log_dir), f"http://127.0.0.1:{port}"

    async def enrolled_subject(self) -> str:
        subject = f"T-{uuid.uuid4().hex[:10]}"
        body = {"subject_id": subject, "site_id": SITE, "sex": "F", "birth_date": "1985-04-12"}
        event_id = await post(self.ingest_url, self.key, "/v1/subjects", body)
        await eventually(
            lambda: self.db.fetchval("SELECT count(*) = 1 FROM events WHERE event_id = $1",
                                     uuid.UUID(event_id)),
            what="the enrolment in the audit log",
        )  # fmt: skip
        return subject

    async def haemoglobin_7(self, subject: str) -> uuid.UUID:
        """Post Hb 7.0 g/dL; returns the id of the signal it raised."""
        body = {
            "subject_id": subject,
            "loinc_code": "718-7",
            "value": "7.0",
            "unit": "g/dL",
            "collected_at": "2026-11-20T08:30:00+08:00",
            "source_message_id": f"LAB-{uuid.uuid4().hex[:12]}",
        }
        await post(self.ingest_url, self.key, "/v1/lab-results", body)
        signal: str = await eventually(
            lambda: self.db.fetchval(
                "SELECT payload->>'signal_id' FROM events WHERE type = $1 AND subject_id = $2",
                RAISED,
                subject,
            ),
            timeout=60,
            what="the signal in the audit log",
        )
        return uuid.UUID(signal)

    async def position_of(self, signal_id: uuid.UUID) -> int:
        position: int = await self.db.fetchval(
            "SELECT position FROM events WHERE type = $1 AND payload->>'signal_id' = $2",
            RAISED,
            str(signal_id),
        )
        return position

    async def read_past(self, position: int) -> bool:
        """Whether the notifiers' catch-up checkpoint has passed ``position``."""
        checkpoint = await self.db.fetchval(
            "SELECT position FROM projection_checkpoints WHERE name = 'notifier.catch-up'"
        )
        return bool(checkpoint is not None and checkpoint >= position)


@asynccontextmanager
async def stack(fresh_dsn: str, log_dir: Path) -> AsyncIterator[tuple[Stack, Any]]:
    with components.tansu() as broker, running_smtp_server() as (smtp_port, mailbox):
        ports = {"rules": free_port(), "ingest": free_port()}
        env = service_env(
            database_url=components.as_service_role(fresh_dsn),
            kafka_bootstrap=broker.bootstrap,
            smtp_port=smtp_port,
            VIGIL_RULES_PORT=str(ports["rules"]),
            VIGIL_INGEST_PORT=str(ports["ingest"]),
            # rounds every second, and a signal answered by the catch-up once 2 s old:
            # what the tests wait for (several rounds) then takes seconds, not half a minute
            VIGIL_NOTIFIER_CATCH_UP_POLL_SECONDS="1",
            VIGIL_NOTIFIER_CATCH_UP_GRACE_SECONDS="2",
        )
        rules = start_service("safety_rules", "rules", ports["rules"], env, log_dir)
        ingest = start_service("ingest", "ingest", ports["ingest"], env, log_dir)
        db = await asyncpg.connect(fresh_dsn)
        try:
            key = await issue_api_key(fresh_dsn)
            url = f"http://127.0.0.1:{ports['ingest']}"
            yield Stack(db, key, env, log_dir, mailbox, url), broker
        finally:
            await db.close()
            ingest.stop()
            rules.stop()


def about(subject: str) -> Callable[[Received], bool]:
    return lambda mail: f"subject {subject}:" in str(mail.message["Subject"])


async def task(url: str, name: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, headers=OPERATOR, timeout=10) as client:
        tasks: dict[str, Any] = (await client.get("/tasks")).json()
    found: dict[str, Any] = next(t for t in tasks["tasks"] if t["task"] == name)
    return found


async def more_rounds(url: str, rounds: int) -> None:
    """Wait until the notifier at ``url`` has completed ``rounds`` more catch-up rounds."""
    seen = (await task(url, "catch-up"))["steps"]

    async def done() -> bool:
        return bool((await task(url, "catch-up"))["steps"] >= seen + rounds)

    await eventually(done, timeout=60, what=f"{rounds} more catch-up rounds")


def recipients(mails: list[Received]) -> list[str]:
    return sorted(to for mail in mails for to in mail.envelope_to)


async def test_a_signal_the_restarted_broker_forgot_is_emailed_once_when_the_notifier_starts(
    fresh_dsn: str, tmp_path: Path
) -> None:
    async with stack(fresh_dsn, tmp_path) as (s, broker):
        notifier, notifier_url = s.notifier()
        subject = await s.enrolled_subject()
        notifier.process.kill()  # type: ignore[union-attr]  # SIGKILL: the notifier is gone
        notifier.process.wait()  # type: ignore[union-attr]

        signal_id = await s.haemoglobin_7(subject)
        await eventually(
            lambda: s.db.fetchval(
                "SELECT published_at IS NOT NULL FROM outbox o JOIN events e USING (event_id) "
                "WHERE e.type = $1 AND e.payload->>'signal_id' = $2",
                RAISED,
                str(signal_id),
            ),
            timeout=60,
            what="the relay marking the signal published",
        )
        broker.stop()
        broker.start()  # a fresh Tansu: topics, the signal and every offset are forgotten
        notifier, notifier_url = s.notifier()
        try:
            mails = await asyncio.to_thread(
                s.mailbox.wait_for,
                about(subject),
                count=len(site_investigators()),
                timeout=TOLD_WITHIN_SECONDS,
            )
            assert set(recipients(mails)) >= site_investigators()
            await more_rounds(notifier_url, 3)

            told = s.mailbox.matching(about(subject))
            assert len(told) == len(set(recipients(told)))  # each person once
            assert recipients(told) == recipients(mails)
            planned = await s.db.fetchval(
                "SELECT count(*) FROM deliveries WHERE signal_id = $1", signal_id
            )
            assert planned == len(told)
            # the catch-up, not the broker, planned them
            caught_up = "vigil_notifier_catch_up_deliveries_total"
            assert await metric_value(notifier_url, caught_up) == planned
            assert (await task(notifier_url, "catch-up"))["state"] == "running"
        finally:
            notifier.stop()


async def test_a_signal_the_broker_delivered_is_emailed_once_with_two_notifiers_reading_the_log(
    fresh_dsn: str, tmp_path: Path
) -> None:
    async with stack(fresh_dsn, tmp_path) as (s, _):
        first, first_url = s.notifier("notifier")
        second, second_url = s.notifier("notifier-2")
        try:
            subject = await s.enrolled_subject()
            signal_id = await s.haemoglobin_7(subject)

            mails = await asyncio.to_thread(
                s.mailbox.wait_for, about(subject), count=len(site_investigators()), timeout=60
            )
            position = await s.position_of(signal_id)
            await eventually(
                lambda: s.read_past(position), timeout=60, what="the catch-up past the signal"
            )
            await more_rounds(first_url, 2)
            await more_rounds(second_url, 2)

            told = s.mailbox.matching(about(subject))
            assert set(recipients(told)) >= site_investigators()
            assert len(told) == len(set(recipients(told))) == len(mails)  # nobody twice
            opened = await s.db.fetchval(
                "SELECT count(*) FROM events WHERE stream_id = $1 AND type = $2",
                f"notification-{signal_id}",
                "org.vigil.notification.opened.v1",
            )
            assert opened == 1
        finally:
            second.stop()
            first.stop()
