"""Findings of an outside review (break13): a row moved to another subject, and a broker
that comes back with other partition counts.

Vigil promises that ``vigil audit verify`` finds any alteration of the audit log, and that
a subject's export holds its whole history; and that a result reaching ingest is judged
(or the service says, in ``/readyz``, that it cannot), whatever the broker forgot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml

from shared.eventstore import NewEvent, append
from tests.integration.test_audit_cli import vigil
from tests.integration.test_event_store import result, tamper
from tests.support import components
from tests.support.api_keys import issue_api_key
from tests.support.mail import MailCatcher, running_smtp_server
from tests.support.services import METRICS_TOKEN, service_env, start_service
from tests.support.studies import copy_studies, from_loopback
from tests.support.waiting import eventually
from vigil.devstack.ports import free_port
from vigil.devstack.supervisor import ManagedProcess
from vigil.devstack.tansu import TansuBroker

pytestmark = pytest.mark.integration

STUDY = "NCT05262686"


async def test_verify_finds_a_row_moved_to_another_subject(fresh_dsn: str, tmp_path: Path) -> None:
    """study_id and subject_id are stored beside the hashed envelope, not hashed themselves:
    editing them (triggers off, as the schema owner may) moves a row out of its subject's
    history. Verify finds the edit, and the subject's export still holds the row, since it
    selects by what the hash covers."""
    anchors = tmp_path / "anchors.jsonl"
    connection = await asyncpg.connect(fresh_dsn)  # the schema owner: may switch triggers off
    try:
        async with connection.transaction():
            await append(connection, [NewEvent(result("S1", f"1{i}.0", n=i)) for i in range(4)])
        clean = await vigil("audit", "verify", dsn=fresh_dsn, anchors=anchors)
        assert clean.returncode == 0, clean.stderr

        # hide subject S1's result at position 2 from its history: no hashed byte changes
        await tamper(
            connection,
            "UPDATE events SET subject_id = 'S9', study_id = 'OTHER' WHERE position = 2",
        )
        out = tmp_path / "s1.jsonl"
        exported = await vigil(
            "audit", "export", "--study", STUDY, "--subject", "S1", "--output", str(out),
            dsn=fresh_dsn, anchors=anchors,
        )  # fmt: skip
        assert exported.returncode == 0, exported.stderr
        records = [json.loads(line) for line in out.read_text().splitlines()]
        verified = await vigil("audit", "verify", dsn=fresh_dsn, anchors=anchors)

        assert verified.returncode == 1, verified.stdout
        assert "chain BROKEN at position 2" in verified.stdout
        assert [record["position"] for record in records] == [1, 2, 3, 4]
        assert {(r["study_id"], r["subject_id"]) for r in records} == {(STUDY, "S1")}
        assert "altered" in exported.stderr
        assert "position(s) 2 " in exported.stderr
    finally:
        await connection.close()


# A private stack: its own broker (which a test may restart), SMTP server, database and the
# three services as real processes, with settings the test chooses.

OPERATOR = {"Authorization": f"Bearer {METRICS_TOKEN}"}
SERVICES = (("safety_rules", "rules"), ("notifier", "notifier"), ("ingest", "ingest"))


@dataclass
class Stack:
    broker: TansuBroker
    dsn: str  # the schema owner's
    mail: MailCatcher
    smtp_port: int
    env: dict[str, str]
    ports: dict[str, int]
    log_dir: Path
    headers: dict[str, str] = field(default_factory=dict)
    processes: dict[str, ManagedProcess] = field(default_factory=dict)

    def url(self, command: str) -> str:
        return f"http://127.0.0.1:{self.ports[command]}"

    def start(self, name: str, command: str) -> None:
        self.processes[name] = start_service(
            name, command, self.ports[command], self.env, self.log_dir
        )

    def stop(self, name: str) -> None:
        self.processes.pop(name).stop()

    async def post(self, path: str, body: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url("ingest"), timeout=30) as client:
            return await client.post(path, json=body, headers=self.headers)

    async def enrol(self, subject: str, site: str = "PKUPH-01") -> None:
        answer = await self.post(
            "/v1/subjects",
            {"subject_id": subject, "site_id": site, "sex": "F", "birth_date": "1980-01-01",
             "day0": "2026-01-01"},
        )  # fmt: skip
        assert answer.status_code == 202, answer.text

    async def haemoglobin(self, subject: str, value: float = 7.0) -> None:
        answer = await self.post(
            "/v1/lab-results",
            {"subject_id": subject, "loinc_code": "718-7", "value": value, "unit": "g/dL",
             "collected_at": "2026-11-20T08:30:00+00:00",
             "source_message_id": f"LAB-{uuid.uuid4().hex[:12]}"},
        )  # fmt: skip
        assert answer.status_code == 202, answer.text

    def alerted(self, subject: str) -> Callable[[Any], bool]:
        return lambda m: f"subject {subject}:" in str(m.message["Subject"])

    async def wait_for_alert(self, subject: str, timeout: float) -> None:
        await asyncio.to_thread(self.mail.wait_for, self.alerted(subject), timeout=timeout)

    async def tasks(self, command: str) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.url(command), timeout=10) as client:
            body = (await client.get("/tasks", headers=OPERATOR)).json()
        return {t["task"]: t for t in body["tasks"]}

    async def ready(self, command: str) -> tuple[int, str]:
        async with httpx.AsyncClient(base_url=self.url(command), timeout=10) as client:
            answer = await client.get("/readyz")
        return answer.status_code, answer.text


@contextlib.asynccontextmanager
async def private_stack(
    tmp_path: Path,
    fresh_dsn: str,
    *,
    roster: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    start: tuple[tuple[str, str], ...] = SERVICES,
    **settings: str,
) -> AsyncIterator[Stack]:
    studies = copy_studies(tmp_path / "studies", from_loopback)
    if roster is not None:
        path = studies / STUDY / "roster.yaml"
        path.write_text(yaml.safe_dump(roster(yaml.safe_load(path.read_text())), sort_keys=False))
    with components.tansu() as broker, running_smtp_server() as (smtp_port, mail):
        ports = {"rules": free_port(), "notifier": free_port(), "ingest": free_port()}
        env = service_env(
            database_url=components.as_service_role(fresh_dsn),
            kafka_bootstrap=broker.bootstrap,
            smtp_port=smtp_port,
            VIGIL_STUDY_DIR=str(studies),
            VIGIL_RULES_PORT=str(ports["rules"]),
            VIGIL_NOTIFIER_PORT=str(ports["notifier"]),
            VIGIL_INGEST_PORT=str(ports["ingest"]),
            VIGIL_AUDIT_ANCHOR_FILE=str(tmp_path / "anchors.jsonl"),
            **settings,
        )
        key = await issue_api_key(fresh_dsn)
        stack = Stack(broker, fresh_dsn, mail, smtp_port, env, ports, tmp_path, key.headers)
        try:
            for name, command in start:
                stack.start(name, command)
            yield stack
        finally:
            for name in list(stack.processes):
                stack.stop(name)


async def test_after_a_broker_restart_with_default_partitions_results_are_still_judged(
    tmp_path: Path, fresh_dsn: str
) -> None:
    """The development broker forgets every topic on a restart, and a producer's metadata
    request may re-create one with the broker's default partition count (4 for Tansu), not
    VIGIL_KAFKA_PARTITIONS (6 here). The rules consumer still held partitions 4 and 5, and
    aiokafka retried committing their offsets for ever: nothing was judged again while
    /readyz stayed green. Results sent after the restart are judged."""
    async with private_stack(tmp_path, fresh_dsn, VIGIL_KAFKA_PARTITIONS="6") as stack:
        await stack.enrol("BEFORE-1")
        await stack.haemoglobin("BEFORE-1")
        await stack.wait_for_alert("BEFORE-1", timeout=60)

        stack.broker.stop()  # the development broker forgets everything
        stack.broker.start()

        subjects = [f"AFTER-{i}" for i in range(6)]

        async def accepted() -> bool:
            try:
                for subject in subjects:
                    await stack.enrol(subject)
                    await stack.haemoglobin(subject)
            except AssertionError:
                return False  # 503 while the producer reconnects: the sender sends again
            return True

        await eventually(accepted, timeout=60, what="ingest accepting again")
        missing = []
        deadline = time.monotonic() + 180
        for subject in subjects:
            try:
                await stack.wait_for_alert(subject, timeout=max(deadline - time.monotonic(), 1))
            except AssertionError:
                missing.append(subject)
        status, body = await stack.ready("rules")
        assert not missing, (
            f"no alert for {missing} within 3 minutes of the broker restart; "
            f"rules /readyz answered {status} {body}"
        )
