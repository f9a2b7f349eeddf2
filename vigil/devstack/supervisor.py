"""Starts components in order, restarts the ones that die, stops all on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from vigil.devstack.ports import wait_until


class Child(Protocol):
    """Something the supervisor runs: started (until ready), polled, stopped."""

    name: str
    restart: bool

    def start(self) -> None: ...

    def exit_code(self) -> int | None: ...

    def stop(self) -> None: ...


def http_ready(url: str) -> Callable[[], bool]:
    """A readiness check: GET ``url`` answers 200."""

    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    return check


@dataclass
class ManagedProcess:
    """A child process; output goes to ``log_file``, or to our console when None."""

    name: str
    argv: list[str]
    env: Mapping[str, str] = field(default_factory=dict)
    log_file: Path | None = None
    ready: Callable[[], bool] | None = None
    ready_timeout: float = 90.0
    restart: bool = True
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        output: IO[bytes] | None = None
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            output = self.log_file.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            env={**os.environ, **self.env},
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            start_new_session=True,  # Ctrl-C reaches the supervisor only; it stops us in order
        )
        if self.ready is not None:
            check = self.ready

            def ready_or_dead() -> bool:
                if self.exit_code() is not None:
                    hint = f"; see {self.log_file}" if self.log_file else ""
                    raise RuntimeError(f"{self.name} exited with code {self.exit_code()}{hint}")
                return check()

            try:
                wait_until(ready_or_dead, timeout=self.ready_timeout, what=self.name, interval=0.2)
            except (TimeoutError, RuntimeError):
                self.stop()  # never leave a half-started process behind
                raise

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def say(message: str) -> None:
    print(f"vigil dev | {message}", flush=True)


class Supervisor:
    """Runs children in start order and stops them in reverse order."""

    def __init__(self, children: list[Child], *, max_restarts: int = 5) -> None:
        self._children = children
        self._started: list[Child] = []
        self._max_restarts = max_restarts
        self._restarts: dict[str, list[float]] = {}
        self._stopping = False

    def _request_stop(self, signum: int, _frame: object) -> None:
        self._stopping = True

    def run(self, after_start: Callable[[], None] | None = None) -> int:
        """Start everything, supervise until Ctrl-C or SIGTERM; returns the exit code."""
        signal.signal(signal.SIGINT, self._request_stop)
        signal.signal(signal.SIGTERM, self._request_stop)
        try:
            for child in self._children:
                if self._stopping:
                    return 130
                say(f"starting {child.name}")
                child.start()
                self._started.append(child)
            if after_start:
                after_start()
            return self._supervise()
        except (RuntimeError, TimeoutError) as error:
            say(f"error: {error}")
            return 1
        finally:
            self.stop_all()

    def _supervise(self) -> int:
        while not self._stopping:
            time.sleep(0.3)
            for child in self._started:
                code = child.exit_code()
                if code is None or self._stopping:
                    continue
                if not child.restart:
                    continue
                recent = [t for t in self._restarts.get(child.name, []) if time.time() - t < 60]
                if len(recent) >= self._max_restarts:
                    say(f"{child.name} keeps exiting (code {code}); stopping everything")
                    return 1
                self._restarts[child.name] = [*recent, time.time()]
                say(f"{child.name} exited with code {code}; restarting")
                time.sleep(min(2 ** len(recent) * 0.5, 10))
                child.start()
        return 0

    def stop_all(self) -> None:
        """Stop in reverse start order, so producers stop before what they write to."""
        for child in reversed(self._started):
            say(f"stopping {child.name}")
            try:
                child.stop()
            except Exception as error:  # keep stopping the others; say what went wrong
                print(f"vigil dev | could not stop {child.name}: {error}", file=sys.stderr)
        self._started.clear()
