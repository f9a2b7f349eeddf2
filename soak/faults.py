"""Faults on a schedule: the plan (pure, from the seed) and the injector that carries it out.

Each component's faults come one after the other; with ``overlap`` (the full soak's
default) faults on different components may coincide, else one fault at a time. Each has
a start and an end on the timeline: a service killed with SIGKILL ends when its restarted
process is ready again; a broker restart ends when the
new, empty broker listens; a PostgreSQL restart (immediate mode) when it accepts
connections again; an SMTP outage when the server is back. A watchdog restarts a service
that exits without being told to and puts that on the timeline too: an unplanned exit is
a finding in itself.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Literal, Protocol

import structlog

from soak.config import FaultCounts
from soak.stack import Stack

log = structlog.get_logger(__name__)
FaultKind = Literal[
    "kill safety_rules",
    "kill ingest",
    "kill notifier",
    "restart broker",
    "restart postgres",
    "smtp outage",
]
BROKER_DOWN_SECONDS = 2.0
POSTGRES_DOWN_SECONDS = 3.0
LOG_TAIL_LINES = 5


@dataclass(frozen=True)
class PlannedFault:
    at: float  # seconds after the stream started
    kind: FaultKind


@dataclass
class FaultRecord:
    kind: str
    started_at: float  # wall clock
    ended_at: float | None = None
    planned_at: float | None = None
    note: str = ""

    @property
    def seconds(self) -> float | None:
        return None if self.ended_at is None else self.ended_at - self.started_at


@dataclass
class Timeline:
    faults: list[FaultRecord] = field(default_factory=list)

    def ends(self) -> list[float]:
        return sorted(f.ended_at for f in self.faults if f.ended_at is not None)


class BrokerListener(Protocol):
    """Something that must know when the broker's memory is wiped (the topic tap)."""

    async def broker_stopping(self) -> None: ...

    async def broker_started(self, at: float) -> None: ...


def plan(counts: FaultCounts, duration: float, seed: int) -> list[PlannedFault]:
    """Faults of every kind, shuffled, spread evenly over the stream with some jitter."""
    per_kind: tuple[tuple[FaultKind, int], ...] = (
        ("kill safety_rules", counts.rules_kills),
        ("kill ingest", counts.ingest_kills),
        ("kill notifier", counts.notifier_kills),
        ("restart broker", counts.broker_restarts),
        ("restart postgres", counts.postgres_restarts),
        ("smtp outage", counts.smtp_outages),
    )
    kinds = [kind for kind, count in per_kind for _ in range(count)]
    rng = random.Random(seed)
    rng.shuffle(kinds)
    if not kinds:
        return []
    first, span = 0.05 * duration, 0.85 * duration
    step = span / len(kinds)
    return [
        PlannedFault(round(first + n * step + rng.uniform(0, step / 3), 1), kind)
        for n, kind in enumerate(kinds)
    ]


class Injector:
    """Carries out a plan against the stack, one fault at a time, and keeps the timeline."""

    def __init__(
        self,
        stack: Stack,
        timeline: Timeline,
        *,
        smtp_outage_seconds: float,
        broker_listeners: list[BrokerListener],
    ) -> None:
        self._stack = stack
        self._timeline = timeline
        self._smtp_outage = smtp_outage_seconds
        self._listeners = broker_listeners
        self._busy: set[str] = set()  # services the injector is restarting itself

    async def run(
        self, faults: list[PlannedFault], stream_started: float, *, overlap: bool = False
    ) -> None:
        """Inject ``faults`` at their times; with ``overlap``, faults on different parts of
        the stack run concurrently (a broker restart while the notifier is down), else
        one at a time."""
        if not overlap:
            await self._run_in_turn(faults, stream_started)
            return
        by_target: dict[str, list[PlannedFault]] = {}
        for fault in faults:
            by_target.setdefault(fault.kind.split(" ", 1)[1], []).append(fault)
        await asyncio.gather(*(self._run_in_turn(f, stream_started) for f in by_target.values()))

    async def _run_in_turn(self, faults: list[PlannedFault], stream_started: float) -> None:
        for fault in faults:
            wait = stream_started + fault.at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            record = FaultRecord(fault.kind, time.time(), planned_at=fault.at)
            self._timeline.faults.append(record)
            log.info("soak.fault", kind=fault.kind)
            record.note = await self._inject(fault.kind)
            record.ended_at = time.time()

    async def _inject(self, kind: FaultKind) -> str:
        stack = self._stack
        if kind.startswith("kill "):
            service = kind.removeprefix("kill ")
            self._busy.add(service)
            try:
                await asyncio.to_thread(stack.kill, service)
                tries = await asyncio.to_thread(stack.start_service, service)
            finally:
                self._busy.discard(service)
            return "" if tries == 1 else f"ready after {tries} starts"
        if kind == "restart broker":
            for listener in self._listeners:
                await listener.broker_stopping()
            await asyncio.to_thread(stack.restart_broker, BROKER_DOWN_SECONDS)
            for listener in self._listeners:
                await listener.broker_started(time.time())
            return f"down {BROKER_DOWN_SECONDS:.0f}s, restarted empty"
        if kind == "restart postgres":
            await asyncio.to_thread(stack.restart_postgres, POSTGRES_DOWN_SECONDS)
            return f"immediate mode, down {POSTGRES_DOWN_SECONDS:.0f}s"
        await asyncio.to_thread(stack.mailbox.stop)
        await asyncio.sleep(self._smtp_outage)
        await asyncio.to_thread(stack.mailbox.start)
        return f"{self._smtp_outage:.0f}s"

    async def watchdog(self, *, interval: float = 0.5) -> None:
        """Restart any service that exits on its own, and record it (until cancelled)."""
        while True:
            await asyncio.sleep(interval)
            for service, code in self._stack.exited().items():
                if service in self._busy:
                    continue
                self._busy.add(service)
                record = FaultRecord(f"unplanned exit of {service}", time.time())
                record.note = f"exit code {code}; " + self._log_tail(service)
                self._timeline.faults.append(record)
                log.warning("soak.unplanned_exit", service=service, code=code)
                try:
                    await asyncio.to_thread(self._stack.start_service, service)
                finally:
                    self._busy.discard(service)
                record.ended_at = time.time()

    def _log_tail(self, service: str) -> str:
        try:
            lines = self._stack.log_of(service).read_text(errors="replace").splitlines()
        except OSError:
            return "no log"
        return " | ".join(line[:300] for line in lines[-LOG_TAIL_LINES:])
