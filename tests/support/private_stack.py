"""A private stack for tests that break things: its own broker (which a test may
restart), SMTP server and the three services as real processes on a database of the
test's own, with settings (and a roster) the test chooses."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from shared.yaml_files import load_yaml
from tests.support import components
from tests.support.api_keys import issue_api_key
from tests.support.mail import MailCatcher, running_smtp_server
from tests.support.services import METRICS_TOKEN, service_env, start_service
from tests.support.studies import copy_studies, from_loopback
from vigil.devstack.ports import free_port
from vigil.devstack.supervisor import ManagedProcess
from vigil.devstack.tansu import TansuBroker

STUDY = "NCT05262686"
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
        path.write_text(yaml.safe_dump(roster(load_yaml(path.read_text())), sort_keys=False))
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
