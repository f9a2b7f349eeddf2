"""A private PostgreSQL cluster run from the machine's PostgreSQL server binaries.

PostgreSQL refuses to run as root; when we are root the cluster's files belong to the
``postgres`` account and the server runs as that account.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from vigil.devstack.ports import wait_until

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, postgres) were not found. Install them, for example "
    "`apt-get install -y postgresql` on Debian or Ubuntu, `dnf install postgresql-server` on "
    "Fedora, `brew install postgresql` on macOS; or point VIGIL_PG_BINDIR at the folder that "
    "holds them; or set VIGIL_DATABASE_URL to use an existing server."
)
SUPERUSER = "vigil"
DATABASE = "vigil"


class PostgresNotInstalled(RuntimeError):
    """The machine has no PostgreSQL server binaries."""


def find_bindir() -> Path:
    """The folder holding initdb and postgres: VIGIL_PG_BINDIR, pg_config, or Debian's layout."""
    if os.environ.get("VIGIL_PG_BINDIR"):
        # an explicit folder is authoritative: do not silently use another installation
        bindir = Path(os.environ["VIGIL_PG_BINDIR"])
        if (bindir / "initdb").exists() and (bindir / "postgres").exists():
            return bindir
        raise PostgresNotInstalled(
            f"VIGIL_PG_BINDIR={bindir} has no initdb and postgres. " + INSTALL_HINT
        )
    candidates: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if result.returncode == 0:
            candidates.append(result.stdout.strip())
    candidates.extend(sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True))
    if initdb := shutil.which("initdb"):
        candidates.append(str(Path(initdb).parent))
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "postgres").exists():
            return Path(candidate)
    raise PostgresNotInstalled(INSTALL_HINT)


def _run_as() -> dict[str, Any]:
    """Popen arguments that drop root to the postgres account; nothing when not root."""
    if os.geteuid() != 0:
        return {}
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresNotInstalled(
            "running as root, but there is no `postgres` account to run the server as; "
            + INSTALL_HINT
        ) from None
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


@dataclass
class PrivateCluster:
    """One cluster in ``data_dir`` listening on 127.0.0.1:``port`` with trust auth."""

    data_dir: Path
    port: int
    fsync: bool = True
    log_file: Path | None = None
    #: more server settings, ``name=value`` each (e.g. ``track_commit_timestamp=on``)
    settings: tuple[str, ...] = ()
    bindir: Path = field(default_factory=find_bindir)
    process: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        """The superuser's DSN: for migrations and administration."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    def dsn_for(self, role: str) -> str:
        """The DSN of another role (trust authentication on loopback: no password)."""
        return f"postgresql://{role}@127.0.0.1:{self.port}/{DATABASE}"

    def _chown_for_server(self, path: Path) -> None:
        run_as = _run_as()
        if run_as:
            os.chown(path, run_as["user"], run_as["group"])

    def initialise(self) -> None:
        """Run initdb once; an existing cluster is reused as it is."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # the server account must be able to reach its folder through every parent
        for parent in self.data_dir.resolve().parents:
            if parent == Path("/"):
                break
            if parent.stat().st_mode & 0o001 == 0 and os.geteuid() == 0:
                parent.chmod(parent.stat().st_mode | 0o011)
        self._chown_for_server(self.data_dir)
        self.data_dir.chmod(0o700)
        result = subprocess.run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-instructions",
            ],
            capture_output=True,
            text=True,
            cwd="/",
            **_run_as(),
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed in {self.data_dir}:\n{result.stderr}")

    def start(self, *, timeout: float = 60.0) -> None:
        """Start the server in the foreground of a child process and wait until it answers."""
        self.initialise()
        output: IO[bytes] | int = subprocess.DEVNULL
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            output = self.log_file.open("ab")
        self.process = subprocess.Popen(
            self.server_command(),
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd="/",
            start_new_session=True,
            **_run_as(),
        )
        wait_until(self.accepting, timeout=timeout, what=f"PostgreSQL on port {self.port}")
        self.create_database()

    def server_command(self) -> list[str]:
        """The ``postgres`` command line for this cluster."""
        return [
            str(self.bindir / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
            "-c",
            f"fsync={'on' if self.fsync else 'off'}",
            "-c",
            "synchronous_commit=on",
            "-c",
            "max_connections=200",
            *(part for setting in self.settings for part in ("-c", setting)),
        ]

    def accepting(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(
                f"PostgreSQL exited with code {self.process.returncode}; see {self.log_file}"
            )
        result = subprocess.run(
            [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
            capture_output=True,
        )
        return result.returncode == 0

    def create_database(self) -> None:
        """Create the ``vigil`` database when it does not exist yet."""
        psql = [
            str(self.bindir / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            SUPERUSER,
            "-d",
            "postgres",
            "-tAc",
        ]
        exists = subprocess.run(
            [*psql, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"],
            capture_output=True,
            text=True,
            check=True,
        )
        if exists.stdout.strip() != "1":
            subprocess.run([*psql, f"CREATE DATABASE {DATABASE}"], capture_output=True, check=True)

    def stop(self, *, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT): roll back open transactions, then stop."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
