"""The embedded development stack: which components ``vigil dev`` starts, and how."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from services.ingest.domain.development import study_ids
from services.settings import VigilSettings
from shared.db.migrate import upgrade
from shared.events.topics import ALL_TOPICS
from vigil.devstack.console import public_url_env
from vigil.devstack.demo_users import ensure_workspace_key, issue_demo_users
from vigil.devstack.dev_key import DEV_KEY_FILE, ensure_dev_key
from vigil.devstack.ports import is_listening
from vigil.devstack.postgres import PrivateCluster
from vigil.devstack.supervisor import Child, ManagedProcess, http_ready, say
from vigil.devstack.tansu import GatedTansuBroker


class Component(Protocol):
    """PrivateCluster and TansuBroker: a process started until ready, and stopped."""

    process: subprocess.Popen[bytes] | None

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class ComponentChild:
    """A component as a supervised child, with an optional step once it is up."""

    component: Component
    name: str
    port: int
    after_start: Callable[[], None] | None = None
    restart: bool = True

    def start(self) -> None:
        if is_listening(self.port):
            raise RuntimeError(
                f"{self.name}: port {self.port} is already in use; stop what listens there "
                "or choose another port (VIGIL_DEV_PG_PORT, VIGIL_DEV_KAFKA_PORT)"
            )
        self.component.start()
        if self.after_start is not None:
            self.after_start()

    def exit_code(self) -> int | None:
        process = self.component.process
        return None if process is None else process.poll()

    def stop(self) -> None:
        self.component.stop()


@dataclass(frozen=True)
class DevPorts:
    """Ports of the components ``vigil dev`` starts itself."""

    postgres: int = 54329
    kafka: int = 9092
    smtp: int = 1025

    @classmethod
    def from_env(cls) -> DevPorts:
        """Defaults, overridden by VIGIL_DEV_PG_PORT, VIGIL_DEV_KAFKA_PORT, VIGIL_DEV_SMTP_PORT."""
        return cls(
            postgres=int(os.environ.get("VIGIL_DEV_PG_PORT", cls.postgres)),
            kafka=int(os.environ.get("VIGIL_DEV_KAFKA_PORT", cls.kafka)),
            smtp=int(os.environ.get("VIGIL_DEV_SMTP_PORT", cls.smtp)),
        )


def _vigil(*args: str) -> list[str]:
    return [sys.executable, "-m", "vigil", *args]


def issue_dev_key(admin_dsn: str, settings: VigilSettings, key_file: Path) -> None:
    """Issue (or reuse) the development API key and tell the user where it is."""
    studies = study_ids(settings.study_dir, settings.default_study)
    key, issued = ensure_dev_key(admin_dsn, key_file, studies)
    verb = "issued" if issued else "reused"
    say(
        f"development API key {verb} (source dev, studies {', '.join(studies)}; also in "
        f"{key_file}, mode 0600): {key}"
    )
    say("send it with every HTTP write: -H 'Authorization: Bearer <key>'")


def issue_workspace_users(admin_dsn: str, settings: VigilSettings, state_dir: Path) -> None:
    """New passwords for the workspace's demo users, and their sign-in lines."""
    users = issue_demo_users(admin_dsn, settings.study_dir, state_dir)
    say(
        f"{len(users)} workspace demo users, new passwords at every start (in "
        f"{state_dir / 'dev-users'}, mode 0600; their sign-in is printed once the stack is up)"
    )


def build_stack(
    settings: VigilSettings, *, state_dir: Path, demo: bool, ports: DevPorts | None = None
) -> list[Child]:
    """The children in start order; external components named by VIGIL_* are not started."""
    ports = ports or DevPorts.from_env()
    logs = state_dir / "logs"
    key_file = state_dir / DEV_KEY_FILE
    children: list[Child] = []
    # loopback MLLP senders are the development source; production defaults stay off
    env: dict[str, str] = {"VIGIL_ENVIRONMENT": "development"}

    if "VIGIL_DATABASE_URL" not in os.environ:
        cluster = PrivateCluster(
            state_dir / "pgdata", ports.postgres, log_file=logs / "postgresql.log"
        )
        admin_dsn = cluster.dsn
        role, owner = settings.database_service_role, settings.database_owner_role

        def migrate() -> None:
            asyncio.run(upgrade(admin_dsn, service_role=role, owner_role=owner))
            issue_dev_key(admin_dsn, settings, key_file)
            issue_workspace_users(admin_dsn, settings, state_dir)

        children.append(ComponentChild(cluster, "postgresql", ports.postgres, migrate))
        # the services get the service role only: none of them can mint an API key
        env["VIGIL_DATABASE_URL"] = cluster.dsn_for(role)
    else:
        asyncio.run(
            upgrade(
                settings.admin_dsn,
                service_role=settings.database_service_role,
                service_password=settings.service_password(),
                owner_role=settings.database_owner_role,
            )
        )
        issue_dev_key(settings.admin_dsn, settings, key_file)
        issue_workspace_users(settings.admin_dsn, settings, state_dir)
    if not {"VIGIL_WORKSPACE_SECRET_KEY", "VIGIL_WORKSPACE_SECRET_KEY_FILE"} & set(os.environ):
        env["VIGIL_WORKSPACE_SECRET_KEY_FILE"] = str(ensure_workspace_key(state_dir))
    if "VIGIL_AUDIT_ANCHOR_FILE" not in os.environ:
        env["VIGIL_AUDIT_ANCHOR_FILE"] = str(state_dir / "audit-anchors.jsonl")

    if "VIGIL_KAFKA_BOOTSTRAP" not in os.environ:
        # gated: a broker restarted under the services gets its topics before their records
        broker = GatedTansuBroker(
            ports.kafka,
            log_file=logs / "tansu.log",
            topics=ALL_TOPICS,
            partitions=settings.kafka_partitions,
        )
        children.append(ComponentChild(broker, "kafka (tansu)", ports.kafka))
        env["VIGIL_KAFKA_BOOTSTRAP"] = broker.bootstrap

    if "VIGIL_SMTP_URL" not in os.environ:
        children.append(
            ManagedProcess(
                "smtp sink",
                [
                    sys.executable,
                    "-m",
                    "vigil.devstack.smtp_sink",
                    "--port",
                    str(ports.smtp),
                    "--folder",
                    str(state_dir / "mail"),
                ],
                ready=lambda: is_listening(ports.smtp),
            )
        )
        env["VIGIL_SMTP_URL"] = f"smtp://127.0.0.1:{ports.smtp}"
        if "VIGIL_WATCHDOG_SMTP_URL" not in os.environ:
            # on one machine the watchdog's second channel is the same sink, another address
            env["VIGIL_WATCHDOG_SMTP_URL"] = env["VIGIL_SMTP_URL"]
            if "VIGIL_WATCHDOG_EMAIL_TO" not in os.environ:
                env["VIGIL_WATCHDOG_EMAIL_TO"] = "watchdog@vigil.example.org"

    if "VIGIL_ENVIRONMENT" not in os.environ:
        # a stack on one machine: /metrics open on loopback, generated link keys, loopback
        # MLLP senders accepted as the development source (DESIGN: vigil dev)
        env["VIGIL_ENVIRONMENT"] = "development"
    env["VIGIL_STUDY_DIR"] = str(settings.study_dir.resolve())
    # each service's public URL on the port it runs on: the links in messages open the
    # workspace (the notifier), not ingest
    env.update(public_url_env(settings, os.environ))
    host = settings.bind_host
    for name, command, port in (
        ("safety_rules", "rules", settings.rules_port),
        ("notifier", "notifier", settings.notifier_port),
        ("ingest", "ingest", settings.ingest_port),
    ):
        children.append(
            ManagedProcess(
                name,
                _vigil(command),
                env=env,
                log_file=logs / f"{name}.log",
                ready=http_ready(f"http://{host}:{port}/readyz"),
            )
        )
    if demo:
        children.append(
            ManagedProcess(
                "demo feed",
                [
                    sys.executable,
                    "-m",
                    "vigil.devstack.demo",
                    "--ingest-url",
                    f"http://{host}:{settings.ingest_port}",
                    "--api-key-file",
                    str(key_file),
                    "--mllp-host",
                    host,
                    "--mllp-port",
                    str(settings.mllp_port),
                ],
                restart=False,
            )
        )
    return children
