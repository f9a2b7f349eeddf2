"""Vigil's services as real processes (``python -m vigil ...``), as in production."""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.api_keys import IssuedKey, issue_api_key_blocking
from tests.support.components import as_service_role, create_database, drop_database
from tests.support.studies import loopback_studies
from vigil.devstack.ports import free_port
from vigil.devstack.supervisor import ManagedProcess, http_ready

REPO = Path(__file__).resolve().parents[2]
# the services run with production settings: /metrics needs this bearer token
METRICS_TOKEN = "test-metrics-token-0123456789abcdef"


@dataclass(frozen=True)
class RunningServices:
    ingest_url: str
    mllp_port: int
    rules_url: str
    notifier_url: str
    log_dir: Path
    api_key: IssuedKey
    """A key of the source ``tests`` for the study NCT05262686 (every site, no right to
    amend other sources' records); every HTTP write to ingest must carry one."""
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    link_keys: str = field(default="", repr=False)
    """The notifier's VIGIL_NOTIFIER_LINK_KEYS: what makes the token a message was issued
    (a webhook's) from the claims the outbox keeps."""

    @property
    def headers(self) -> dict[str, str]:
        """``Authorization: Bearer <session key>``: pass to every POST to ingest."""
        return self.api_key.headers

    def stop(self, name: str) -> None:
        """Stop one service (``ingest``, ``safety_rules`` or ``notifier``)."""
        self.processes[name].stop()


def service_env(
    *, database_url: str, kafka_bootstrap: str, smtp_port: int, **extra: str
) -> dict[str, str]:
    return {
        "VIGIL_DATABASE_URL": database_url,
        "VIGIL_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "VIGIL_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        # the shipped studies, with every HL7 sender connecting from 127.0.0.1 over plain
        # MLLP, explicitly allowed: production settings otherwise (tests.support.studies)
        "VIGIL_STUDY_DIR": str(loopback_studies()),
        "VIGIL_MLLP_ALLOW_PLAIN": "true",
        "VIGIL_KAFKA_PARTITIONS": "3",
        # the suite checks what is stored and sent, not how fast (the soak and the
        # benchmarks run at the default 50 ms): on Tansu, an idle consumer polling every
        # 50 ms costs the broker ~8% of a core (measured on 18 partitions), and a run holds
        # several stacks on two cores; at 250 ms, ~3%, for ~35 ms more per hop (median)
        "VIGIL_KAFKA_FETCH_MAX_WAIT_MS": "250",
        "VIGIL_MLLP_PORT": str(free_port()),
        "VIGIL_LOG_LEVEL": "INFO",
        "VIGIL_METRICS_TOKEN": METRICS_TOKEN,
        # the services run as in production, which needs a key for acknowledgement links
        "VIGIL_NOTIFIER_LINK_KEYS": f"test-{secrets.token_hex(4)}:{secrets.token_urlsafe(48)}",
        # and one that seals the workspace's second factors
        "VIGIL_WORKSPACE_SECRET_KEY": secrets.token_urlsafe(48),
        **extra,
    }


def start_service(
    name: str, command: str, port: int, env: Mapping[str, str], log_dir: Path
) -> ManagedProcess:
    process = ManagedProcess(
        name,
        [sys.executable, "-m", "vigil", command],
        env=env,
        log_file=log_dir / f"{name}.log",
        ready=http_ready(f"http://127.0.0.1:{port}/readyz"),
        ready_timeout=60,
    )
    process.start()
    return process


@contextmanager
def running_services(
    base_env: Mapping[str, str], log_dir: Path, *, admin_dsn: str
) -> Iterator[RunningServices]:
    """Start rules, notifier and ingest on free ports, with an API key issued in the
    database of ``admin_dsn`` (the schema owner's DSN of the services' database); stop
    them afterwards."""
    api_key = issue_api_key_blocking(admin_dsn)
    ports = {"rules": free_port(), "notifier": free_port(), "ingest": free_port()}
    mllp_port = free_port()
    env = {
        **base_env,
        "VIGIL_MLLP_PORT": str(mllp_port),
        "VIGIL_RULES_PORT": str(ports["rules"]),
        "VIGIL_NOTIFIER_PORT": str(ports["notifier"]),
        "VIGIL_INGEST_PORT": str(ports["ingest"]),
        # each service's public address on the port it runs on: links in messages open
        # this notifier's workspace
        "VIGIL_NOTIFIER_PUBLIC_URL": f"http://127.0.0.1:{ports['notifier']}",
        "VIGIL_INGEST_PUBLIC_URL": f"http://127.0.0.1:{ports['ingest']}",
        **{k: v for k, v in base_env.items() if k.endswith("_PUBLIC_URL")},
    }
    started: list[ManagedProcess] = []
    try:
        # started side by side: each waits seconds for its consumer group to form
        with ThreadPoolExecutor(max_workers=3) as pool:
            futures = [
                pool.submit(start_service, name, command, ports[command], env, log_dir)
                for name, command in (
                    ("safety_rules", "rules"),
                    ("notifier", "notifier"),
                    ("ingest", "ingest"),
                )
            ]
            failures = []
            for future in futures:
                try:
                    started.append(future.result())
                except (RuntimeError, TimeoutError) as error:
                    failures.append(error)
            if failures:
                raise failures[0]
        yield RunningServices(
            ingest_url=f"http://127.0.0.1:{ports['ingest']}",
            mllp_port=mllp_port,
            rules_url=f"http://127.0.0.1:{ports['rules']}",
            notifier_url=f"http://127.0.0.1:{ports['notifier']}",
            log_dir=log_dir,
            api_key=api_key,
            processes={process.name: process for process in started},
            link_keys=env.get("VIGIL_NOTIFIER_LINK_KEYS", ""),
        )
    finally:
        for process in reversed(started):
            process.stop()


@dataclass(frozen=True)
class PrivateIngest:
    """An ingest process of a test's own, on a database of its own (``dsn``: the schema
    owner's, for issuing keys and reading what ingest kept)."""

    url: str
    mllp_port: int
    dsn: str


@contextmanager
def private_ingest(
    *, server_dsn: str, kafka_bootstrap: str, smtp_port: int, log_dir: Path, **settings: str
) -> Iterator[PrivateIngest]:
    """ingest alone, with its own settings (``VIGIL_...`` names) and a new database on the
    PostgreSQL server of ``server_dsn``, on free ports."""
    dsn = asyncio.run(create_database(server_dsn, "ingest"))
    port, mllp_port = free_port(), free_port()
    env = service_env(
        database_url=as_service_role(dsn),
        kafka_bootstrap=kafka_bootstrap,
        smtp_port=smtp_port,
        VIGIL_INGEST_PORT=str(port),
        **settings,
    )
    env["VIGIL_MLLP_PORT"] = str(mllp_port)
    process = start_service("ingest", "ingest", port, env, log_dir)
    try:
        yield PrivateIngest(f"http://127.0.0.1:{port}", mllp_port, dsn)
    finally:
        process.stop()
        asyncio.run(drop_database(server_dsn, dsn))
