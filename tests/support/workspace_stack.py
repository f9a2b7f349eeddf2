"""The workspace the browser tests sign in to: the real pipeline on a database of its own.

ingest and safety_rules run as real processes (``python -m vigil ...``), the notifier is
its composition root (``services.notifier.main.build_app``) served by uvicorn in the test's
event loop on a loopback port, with production settings: the study folder, link keys, a
metrics token, SMTP to an aiosmtpd catcher of its own. The trial of
:mod:`tests.support.workspace_trial` is sent to ingest's JSON API as laboratories send it,
and the stack is ready once the rules service has written every signal and data-quality
issue the trial must produce into the audit log and the notifier has planned its signals.

The broker is a Tansu of the stack's own (``components.kafka()``, as the other private
stacks do): the services' consumer group ids are fixed, and the session's broker is shared
with the ``services`` fixture, whose rules service would otherwise take half of this
stack's partitions (and write its facts into the other database).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import uvicorn

from services.notifier.main import build_app
from services.settings import VigilSettings
from shared.events.notifications import notification_stream
from shared.http_server import ConnectionBounds, server_config
from tests.support import components
from tests.support.api_keys import issue_api_key
from tests.support.mail import MailCatcher, running_smtp_server
from tests.support.services import service_env, start_service
from tests.support.waiting import eventually
from tests.support.workspace_trial import EXPECTED, STUDY, VISIT_DAYS, Expected, Trial
from tests.support.workspace_users import create_workspace_user
from vigil.devstack.ports import free_port
from vigil.devstack.supervisor import ManagedProcess

# how long the trial may take to go through ingest, the broker and the rules service
SEEDED_WITHIN_SECONDS = 90.0


@dataclass(frozen=True)
class Person:
    """A roster person of the shipped study who signs in to the workspace."""

    person_id: str
    name: str  # the printed name on the roster (what a signature shows)
    role: str
    site_id: str | None  # None: study-wide


INVESTIGATOR = Person("inv-0101", "Site 01 Principal Investigator", "investigator", "PKUPH-01")
INVESTIGATOR_SITE_2 = Person(
    "inv-0201", "Site 02 Principal Investigator", "investigator", "PKUPH-02"
)
MEDICAL_MONITOR = Person("mm-01", "Medical Monitor", "medical_monitor", None)
DATA_MANAGER = Person("dm-01", "Data Manager", "data_manager", None)
PEOPLE = (INVESTIGATOR, INVESTIGATOR_SITE_2, MEDICAL_MONITOR, DATA_MANAGER)


@dataclass
class WorkspaceStack:
    """The running stack: the notifier's base URL, its database and mailbox, the trial."""

    url: str
    admin_dsn: str
    env: dict[str, str]
    mailbox: MailCatcher
    trial: Trial
    log_dir: Path
    signals: dict[tuple[str, str], uuid.UUID] = field(default_factory=dict)
    ready_seconds: float = 0.0  # from starting the services to the trial seeded
    passwords: dict[str, str] = field(default_factory=dict)

    def at(self, path: str) -> str:
        """The absolute URL of a workspace path (``/workspace/inbox``)."""
        return self.url + path

    def signal(self, subject_id: str, rule_id: str) -> uuid.UUID:
        """The id of the signal the rules service raised for this subject and rule."""
        try:
            return self.signals[(subject_id, rule_id)]
        except KeyError:
            raise AssertionError(
                f"no signal of rule {rule_id} for subject {subject_id}; raised: "
                f"{sorted(self.signals)}"
            ) from None

    async def events(self, sql_filter: str = "TRUE", *args: Any) -> list[dict[str, Any]]:
        """Rows of the audit log in order (position, type, stream_id, subject_id, payload)
        that match ``sql_filter`` (a WHERE clause with ``$1``... for ``args``)."""
        connection = await asyncpg.connect(self.admin_dsn)
        try:
            rows = await connection.fetch(
                "SELECT position, type, stream_id, subject_id, payload_json FROM events "
                f"WHERE {sql_filter} ORDER BY position",
                *args,
            )
        finally:
            await connection.close()
        return [{**dict(row.items()), "payload": json.loads(row["payload_json"])} for row in rows]

    async def password_of(self, person: Person) -> str:
        """The person's workspace password, set (:func:`set_password`) the first time it is
        asked for."""
        if person.person_id not in self.passwords:
            password = f"vigil-{secrets.token_urlsafe(18)}"
            await set_password(self, person.person_id, password)
            self.passwords[person.person_id] = password
        return self.passwords[person.person_id]


async def set_password(stack: WorkspaceStack, person_id: str, password: str) -> None:
    """Create or reset a roster person's workspace account with this password.

    The one place the browser tests create users: the password is stored as ``vigil users
    set-password`` stores it."""
    await create_workspace_user(stack.admin_dsn, person_id, password)


def stack_env(admin_dsn: str, bootstrap: str, smtp_port: int, log_dir: Path) -> dict[str, str]:
    """Production settings of all three services (``VIGIL_...``), on free loopback ports."""
    notifier_port = free_port()
    return service_env(
        database_url=components.as_service_role(admin_dsn),
        kafka_bootstrap=bootstrap,
        smtp_port=smtp_port,
        VIGIL_ENVIRONMENT="production",
        VIGIL_KAFKA_PARTITIONS="1",
        VIGIL_INGEST_PORT=str(free_port()),
        VIGIL_RULES_PORT=str(free_port()),
        VIGIL_NOTIFIER_PORT=str(notifier_port),
        # the links in e-mails lead here
        VIGIL_NOTIFIER_PUBLIC_URL=f"http://127.0.0.1:{notifier_port}",
        VIGIL_AUDIT_ANCHOR_FILE=str(log_dir / "anchors.jsonl"),
        # what the workspace's accounts (ws-b) need in production; ignored until then
        VIGIL_WORKSPACE_SECRET_KEY=secrets.token_urlsafe(48),
    )


def settings_from(env: dict[str, str]) -> VigilSettings:
    """The settings object a service builds from these ``VIGIL_`` variables."""
    return VigilSettings(
        **{key.removeprefix("VIGIL_").lower(): value for key, value in env.items()}
    )


@asynccontextmanager
async def serving_notifier(settings: VigilSettings) -> AsyncIterator[str]:
    """The notifier's real app served by uvicorn until the block ends; its URL, ready."""
    app = build_app(settings)
    config = server_config(
        app,
        host="127.0.0.1",
        port=settings.notifier_port,
        bounds=ConnectionBounds.from_settings(settings),
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    url = f"http://127.0.0.1:{settings.notifier_port}"

    async def ready() -> bool:
        if serving.done():
            serving.result()  # it failed to start: say why
        try:
            async with httpx.AsyncClient(base_url=url) as client:
                return (await client.get("/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    try:
        await eventually(ready, timeout=60, what="the notifier ready")
        yield url
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=30)


async def start_process(name: str, command: str, env: dict[str, str], log_dir: Path) -> Any:
    port = int(env[f"VIGIL_{command.upper()}_PORT"])
    return await asyncio.to_thread(start_service, name, command, port, env, log_dir)


@asynccontextmanager
async def workspace_stack(postgres_dsn: str, log_dir: Path) -> AsyncIterator[WorkspaceStack]:
    """The whole pipeline on a new database of the session's PostgreSQL, seeded with the
    trial; everything is stopped and the database dropped afterwards."""
    started = time.monotonic()
    admin_dsn = await components.create_database(postgres_dsn, prefix="workspace")
    try:
        with components.kafka() as bootstrap, running_smtp_server() as (smtp_port, mailbox):
            env = stack_env(admin_dsn, bootstrap, smtp_port, log_dir)
            async with AsyncExitStack() as running:
                # rules first and alongside the notifier: each waits for its consumer group
                processes: list[ManagedProcess] = list(
                    await asyncio.gather(
                        start_process("safety_rules", "rules", env, log_dir),
                        start_process("ingest", "ingest", env, log_dir),
                    )
                )
                for process in processes:
                    running.callback(process.stop)
                url = await running.enter_async_context(serving_notifier(settings_from(env)))
                stack = WorkspaceStack(
                    url, admin_dsn, env, mailbox, Trial.ending_recently(), log_dir
                )
                await seed(stack)
                stack.ready_seconds = time.monotonic() - started
                yield stack
    finally:
        await components.drop_database(postgres_dsn, admin_dsn)


async def seed(stack: WorkspaceStack) -> None:
    """Send the trial to ingest, one visit at a time, and wait until the audit log holds
    what it must produce.

    Each request waits until the rules service has stored what it sent (and so judged it:
    facts and their signals commit together): a batch holding a raise and its later
    correction, or two visits at once, would be judged in one go, and the signal's story
    (raised, then escalated; raised, then retracted) would depend on the machine's load.
    """
    key = await issue_api_key(stack.admin_dsn)
    ingest_url = f"http://127.0.0.1:{stack.env['VIGIL_INGEST_PORT']}"
    trial = stack.trial
    async with httpx.AsyncClient(base_url=ingest_url, headers=key.headers, timeout=30) as client:

        async def send(path: str, body: list[dict[str, Any]]) -> None:
            answer = await client.post(path, json=body)
            assert answer.status_code == 202, f"{path}: {answer.status_code} {answer.text}"
            event_ids = [uuid.UUID(text) for text in answer.json()["event_ids"]]
            await eventually(
                lambda: stored(stack, event_ids),
                timeout=SEEDED_WITHIN_SECONDS,
                what=f"the rules service storing what {path} accepted",
            )

        await send("/v1/subjects", trial.enrolments())
        await send("/v1/study-drug-administrations", trial.study_drug())
        for day in VISIT_DAYS:
            await send("/v1/lab-results", trial.visit(day))
        await send("/v1/adverse-events", trial.adverse_events())
        await send("/v1/lab-results", trial.follow_ups())
    missing = await missing_from_audit_log(stack, EXPECTED)
    assert missing == [], f"the real pipeline did not produce: {missing}"
    for row in await stack.events("type = 'org.vigil.safety_signal.raised.v1'"):
        payload = row["payload"]
        stack.signals[(row["subject_id"], payload["rule_id"])] = uuid.UUID(payload["signal_id"])
    await eventually(
        lambda: notifier_planned(stack),
        timeout=SEEDED_WITHIN_SECONDS,
        what="the notifier's plan for every raised signal",
    )


async def stored(stack: WorkspaceStack, event_ids: list[uuid.UUID]) -> bool:
    """Whether the audit log holds every one of these events."""
    connection = await asyncpg.connect(stack.admin_dsn)
    try:
        count = await connection.fetchval(
            "SELECT count(*) FROM events WHERE event_id = ANY($1::uuid[])", event_ids
        )
    finally:
        await connection.close()
    return bool(count == len(event_ids))


async def missing_from_audit_log(
    stack: WorkspaceStack, expected: tuple[Expected, ...]
) -> list[Expected]:
    """Which of ``expected`` the audit log does not hold."""
    rows = await stack.events("study_id = $1 OR study_id IS NULL", STUDY)
    present = {
        (
            row["type"].removeprefix("org.vigil."),
            row["subject_id"],
            row["payload"].get("rule_id"),
            row["payload"].get("issue"),
        )
        for row in rows
    }
    missing = [
        wanted
        for wanted in expected
        if not any(
            kind == wanted.event_type
            and subject == wanted.subject_id
            and (wanted.rule_id is None or rule == wanted.rule_id)
            and (wanted.issue is None or issue == wanted.issue)
            for kind, subject, rule, issue in present
        )
    ]
    return missing


async def notifier_planned(stack: WorkspaceStack) -> bool:
    """Whether the notifier has opened the notification of each signal the trial raises."""
    opened = {
        row["stream_id"] for row in await stack.events("type = 'org.vigil.notification.opened.v1'")
    }
    return all(
        notification_stream(stack.signal(wanted.subject_id, wanted.rule_id)) in opened
        for wanted in EXPECTED
        if wanted.event_type == "safety_signal.raised.v1" and wanted.rule_id is not None
    )
