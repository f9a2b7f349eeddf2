"""The whole stack on real components, and the operations the fault injector needs.

A private PostgreSQL cluster (synchronous_commit on, so a commit that was answered survives
an immediate-mode stop), a Tansu broker (memory only: a restart forgets every topic,
message and offset), the soak's SMTP server, and ingest, safety_rules and notifier as
separate processes (``python -m vigil ...``), exactly as the development stack runs them.
Every method here blocks; the asynchronous parts of the soak call them in a thread.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from shared.db.migrate import upgrade
from shared.events.topics import ALL_TOPICS
from soak.mailbox import Mailbox
from vigil.devstack.ports import free_port
from vigil.devstack.postgres import PrivateCluster
from vigil.devstack.supervisor import ManagedProcess, http_ready
from vigil.devstack.tansu import GatedTansuBroker, TansuBroker

REPO = Path(__file__).resolve().parents[1]
SERVICE_ROLE, SERVICE_PASSWORD = "vigil_app", "vigil-soak"
# service name -> (``vigil`` sub-command, the settings variable of its HTTP port)
SERVICES = {
    "ingest": ("ingest", "VIGIL_INGEST_PORT"),
    "safety_rules": ("rules", "VIGIL_RULES_PORT"),
    "notifier": ("notifier", "VIGIL_NOTIFIER_PORT"),
}
RESTART_TIMEOUT_SECONDS = 240.0


@dataclass
class Stack:
    folder: Path
    cluster: PrivateCluster
    broker: TansuBroker
    mailbox: Mailbox
    env: dict[str, str]
    processes: dict[str, ManagedProcess] = field(default_factory=dict)

    @property
    def admin_dsn(self) -> str:
        return self.cluster.dsn

    @property
    def service_dsn(self) -> str:
        return self.env["VIGIL_DATABASE_URL"]

    @property
    def ingest_url(self) -> str:
        return f"http://127.0.0.1:{self.env['VIGIL_INGEST_PORT']}"

    @property
    def mllp_address(self) -> tuple[str, int]:
        return ("127.0.0.1", int(self.env["VIGIL_MLLP_PORT"]))

    def log_of(self, service: str) -> Path:
        return self.folder / "logs" / f"{service}.log"

    def _process(self, service: str) -> ManagedProcess:
        command, port_variable = SERVICES[service]
        return ManagedProcess(
            service,
            [sys.executable, "-m", "vigil", command],
            env=self.env,
            log_file=self.log_of(service),
            ready=http_ready(f"http://127.0.0.1:{self.env[port_variable]}/readyz"),
            ready_timeout=90,
            restart=False,
        )

    def start_service(self, service: str) -> int:
        """Start a service and wait until it is ready, trying again while it cannot start
        (its database or broker may be coming back); returns the number of tries."""
        deadline = time.monotonic() + RESTART_TIMEOUT_SECONDS
        tries = 0
        while True:
            tries += 1
            process = self._process(service)
            try:
                process.start()
            except (RuntimeError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(min(tries, 5))
                continue
            self.processes[service] = process
            return tries

    def kill(self, service: str) -> None:
        """SIGKILL: no shutdown code runs, nothing is flushed or committed."""
        process = self.processes[service].process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()

    def exited(self) -> dict[str, int]:
        """Services whose process has ended, with the exit code."""
        return {
            name: code
            for name, managed in self.processes.items()
            if (code := managed.exit_code()) is not None
        }

    def restart_broker(self, down_seconds: float) -> None:
        """Stop the broker (it forgets everything), wait, start an empty one."""
        self.broker.stop()
        time.sleep(down_seconds)
        self.broker.start()

    def restart_postgres(self, down_seconds: float) -> None:
        """Immediate-mode stop (SIGQUIT: no checkpoint, crash recovery on start), then start."""
        process = self.cluster.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGQUIT)
            process.wait(timeout=60)
        time.sleep(down_seconds)
        self.cluster.start(timeout=120)

    def stop(self) -> None:
        """Everything down, producers first."""
        for name in ("ingest", "safety_rules", "notifier"):
            if name in self.processes:
                self.processes[name].stop()
        self.mailbox.stop()
        self.broker.stop()
        self.cluster.stop()


def start_stack(folder: Path, service_env: Mapping[str, str]) -> Stack:
    """Start PostgreSQL, the broker, the SMTP server, migrate, then the three services."""
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)  # the postgres account must reach its data folder
    cluster = PrivateCluster(
        folder / "pgdata", free_port(), fsync=False, log_file=folder / "logs" / "postgres.log"
    )
    cluster.start()
    asyncio.run(upgrade(cluster.dsn, service_role=SERVICE_ROLE, service_password=SERVICE_PASSWORD))
    # gated: the restarted broker has its topics before the services send it anything
    # (Tansu renumbers a partition produced to before it existed: see GatedTansuBroker)
    broker = GatedTansuBroker(
        free_port(), log_file=folder / "logs" / "tansu.log", topics=ALL_TOPICS, partitions=3
    )
    broker.start()
    mailbox = Mailbox(free_port())
    mailbox.start()
    service_dsn = cluster.dsn_for(SERVICE_ROLE).replace(
        f"{SERVICE_ROLE}@", f"{SERVICE_ROLE}:{SERVICE_PASSWORD}@"
    )
    env = {
        "VIGIL_ENVIRONMENT": "development",
        "VIGIL_DATABASE_URL": service_dsn,
        "VIGIL_KAFKA_BOOTSTRAP": broker.bootstrap,
        "VIGIL_KAFKA_PARTITIONS": str(broker.partitions),
        "VIGIL_SMTP_URL": f"smtp://127.0.0.1:{mailbox.port}",
        "VIGIL_STUDY_DIR": str(REPO / "studies"),
        "VIGIL_AUDIT_ANCHOR_FILE": str(folder / "anchors.jsonl"),
        "VIGIL_NOTIFIER_LINK_SECRET": secrets.token_hex(32),
        "VIGIL_LOG_LEVEL": "INFO",
        "VIGIL_MLLP_PORT": str(free_port()),
        **{port_variable: str(free_port()) for _, port_variable in SERVICES.values()},
        **service_env,
    }
    stack = Stack(folder, cluster, broker, mailbox, env)
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            # side by side: each waits seconds for its consumer group to form
            for future in [pool.submit(stack.start_service, name) for name in SERVICES]:
                future.result()
    except BaseException:
        stack.stop()
        raise
    return stack
