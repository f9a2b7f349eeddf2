"""One supervisor for every long-running task of a service: started, watched, restarted
with back-off when it dies, and stopped (cancelled and awaited).

Each task reports its progress through a :class:`Progress`: when a step begins (work is
waiting), when it completes, and which single items failed. From that the supervisor
knows each task's state:

- ``running``: alive, and completing steps as work comes;
- ``restarting``: it died (any exception, logged with its traceback and counted) and
  is down until it completes a step after its restart;
- ``stuck``: work has waited longer than ``stuck_after`` seconds without a completed step
  (a step that hangs, a batch that fails again and again, an outage);
- ``stopped``: the service is shutting down.

A task that is down or stuck makes the service's /readyz answer 503 naming it; /tasks
shows every task's state, restarts and last progress; ``vigil_task_*`` metrics say the
same to Prometheus. Tasks run by a library (FastStream's consumers) are *watched*: the
handler reports its steps, the library keeps the task alive.

Every composition root runs its tasks the same way, inside
:meth:`Supervisor.supervising` of what they use (the pool, the publisher), or
:func:`shared.consumer_runtime.consumer_runtime` (the pool and the broker): on the way out
every task is cancelled and awaited, and every step a watched consumer was in has ended,
so no step is left running, mid-send or mid-query, when the pool closes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import structlog

from shared import metrics
from shared.failures import failure_summary, failure_traceback, is_outage
from shared.settings import CommonSettings

log = structlog.get_logger(__name__)

TaskState = Literal["running", "restarting", "stuck", "stopped"]
TaskBody = Callable[["Progress"], Awaitable[None]]
ReadinessCheck = Callable[[], Awaitable[str | None]]
Resources = TypeVar("Resources")
# failing items listed per task in /tasks (the counter counts them all)
MAX_LISTED_ITEMS = 20
# how long stopping waits for a step a library cancelled to unwind
STEP_END_TIMEOUT_SECONDS = 30.0


def _iso(wall: float | None) -> str | None:
    return None if wall is None else datetime.fromtimestamp(wall, UTC).isoformat()


@dataclass
class FailingItem:
    """One item a task set aside: what it is (an id, never content) and why."""

    reason: str
    first_failed: float
    last_failed: float
    failures: int = 1


@dataclass
class TaskStatus:
    """What the supervisor knows of one task (times: monotonic, and wall for display)."""

    name: str
    started: float
    state: TaskState = "running"
    restarts: int = 0
    steps: int = 0
    step_failures: int = 0
    item_failures: int = 0
    last_progress: float | None = None
    last_progress_wall: float | None = None
    waiting_since: float | None = None
    last_error: str | None = None
    failing: dict[str, FailingItem] = field(default_factory=dict)


class Progress:
    """A task's reports to its supervisor; cheap to call on every step."""

    def __init__(self, supervisor: Supervisor, status: TaskStatus) -> None:
        self._supervisor = supervisor
        self._status = status

    @property
    def name(self) -> str:
        return self._status.name

    def waiting(self) -> None:
        """Work arrived (a wake-up): from now on, no progress counts towards stuck."""
        if self._status.waiting_since is None:
            self._status.waiting_since = self._supervisor.now()

    def working(self) -> None:
        """A step began: work is waiting until it completes."""
        self.waiting()

    def done(self, *, more: bool = False) -> None:
        """A step completed; ``more``: work is still waiting (a full batch)."""
        status, now = self._status, self._supervisor.now()
        status.steps += 1
        status.last_progress = now
        status.last_progress_wall = self._supervisor.wall()
        status.waiting_since = now if more else None
        self._supervisor.progressed(status)

    def idle(self) -> None:
        """Alive, with nothing to do (a periodic task before its first round)."""
        self.done()

    def step_failed(self, error: BaseException) -> None:
        """A step failed as a whole and will be tried again; the work still waits."""
        self._status.step_failures += 1
        self._status.last_error = failure_summary(error)
        metrics.TASK_STEP_FAILURES.labels(self._supervisor.service, self.name).inc()

    @contextmanager
    def step(self) -> Iterator[None]:
        """Report the block as one step: begun, then completed or failed (re-raised).
        The task running it is known to the supervisor until it ends (see
        :meth:`Supervisor.steps_ended`)."""
        self.working()
        task = asyncio.current_task()
        if task is not None:
            self._supervisor.stepping.add(task)
        try:
            yield
        except Exception as error:
            self.step_failed(error)
            raise
        finally:
            if task is not None:
                self._supervisor.stepping.discard(task)
        self.done()

    def item_failed(self, item: str, error: BaseException | str) -> None:
        """One item failed and was set aside (marked failed where it lives, retried
        later or dead-lettered); the task goes on with the rest. ``item`` is an id."""
        reason = error if isinstance(error, str) else failure_summary(error)
        now = self._supervisor.now()
        status = self._status
        status.item_failures += 1
        known = status.failing.get(item)
        if known is not None:
            known.reason, known.last_failed, known.failures = reason, now, known.failures + 1
        elif len(status.failing) < MAX_LISTED_ITEMS:
            status.failing[item] = FailingItem(reason, now, now)
        metrics.TASK_ITEM_FAILURES.labels(self._supervisor.service, self.name).inc()
        log.error("supervisor.item_failed", task=self.name, item=item, reason=reason)

    def item_succeeded(self, item: str) -> None:
        """An item that failed before went through: no longer listed."""
        self._status.failing.pop(item, None)

    def item(self, item: str) -> AbstractContextManager[None]:
        """Isolate one item (see :func:`isolated`)."""
        return isolated(item, self)


@contextmanager
def isolated(item: str, progress: Progress | None) -> Iterator[None]:
    """Run the block as the work on one item, so that it fails alone: an outage (see
    :func:`shared.failures.is_outage`) propagates and fails the whole step, which is
    retried; any other exception is logged with its traceback, reported to ``progress``
    as a failed item, and not raised, so the caller goes on with the next item."""
    try:
        yield
    except Exception as error:
        if is_outage(error):
            raise
        log.error("supervisor.item_crashed", item=item, traceback=failure_traceback(error))
        if progress is not None:
            progress.item_failed(item, error)
    else:
        if progress is not None:
            progress.item_succeeded(item)


class Supervisor:
    """Starts, watches, restarts and stops a service's long-running tasks."""

    def __init__(
        self,
        service: str,
        *,
        stuck_after: float = 120.0,
        restart_initial: float = 1.0,
        restart_max: float = 60.0,
        check_every: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self._stuck_after = stuck_after
        self._restart_initial = restart_initial
        self._restart_max = restart_max
        self._check_every = check_every
        self.now = clock
        self.wall = wall
        self._statuses: dict[str, TaskStatus] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._checker: asyncio.Task[None] | None = None
        # tasks inside a Progress.step(): a library's consumer mid-batch, say
        self.stepping: set[asyncio.Task[Any]] = set()

    @classmethod
    def for_service(cls, service: str, settings: CommonSettings) -> Supervisor:
        """The supervisor of one service, with the configured stuck time and back-off."""
        return cls(
            service,
            stuck_after=settings.task_stuck_after_seconds,
            restart_max=settings.task_restart_max_seconds,
        )

    def _register(self, name: str) -> Progress:
        if name in self._statuses:
            raise ValueError(f"a task named {name!r} is supervised already")
        status = TaskStatus(name, started=self.now())
        self._statuses[name] = status
        metrics.TASK_RESTARTS.labels(self.service, name)  # exported as 0 from the start
        metrics.TASK_ITEM_FAILURES.labels(self.service, name)
        metrics.TASK_STEP_FAILURES.labels(self.service, name)
        metrics.TASK_UP.labels(self.service, name).set(1)
        if self._checker is None:
            self._checker = asyncio.create_task(self._check(), name=f"{self.service}-supervisor")
        return Progress(self, status)

    def start(self, name: str, body: TaskBody) -> Progress:
        """Run ``body(progress)`` as a task until :meth:`stop`, restarting it when it dies."""
        progress = self._register(name)
        status = self._statuses[name]
        self._tasks[name] = asyncio.create_task(self._supervise(status, body, progress), name=name)
        return progress

    def watch(self, name: str) -> Progress:
        """A task someone else runs (a library's consumer): only its reports are watched."""
        return self._register(name)

    async def _supervise(self, status: TaskStatus, body: TaskBody, progress: Progress) -> None:
        delay = self._restart_initial
        while True:
            steps_before = status.steps
            try:
                await body(progress)
                error: Exception = RuntimeError("the task returned; it must run until stopped")
            except Exception as died:
                error = died
            if status.steps > steps_before:
                delay = self._restart_initial  # it did work since it last died
            status.restarts += 1
            status.state = "restarting"
            status.last_error = failure_summary(error)
            metrics.TASK_RESTARTS.labels(self.service, status.name).inc()
            metrics.TASK_UP.labels(self.service, status.name).set(0)
            log.error(
                "supervisor.task_died",
                task=status.name,
                error=status.last_error,
                traceback=failure_traceback(error),
                restarts=status.restarts,
                restart_in_seconds=delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._restart_max)
            log.info("supervisor.task_restarted", task=status.name, restarts=status.restarts)

    def progressed(self, status: TaskStatus) -> None:
        """A task completed a step: it is up (again)."""
        metrics.TASK_LAST_PROGRESS.labels(self.service, status.name).set(
            status.last_progress_wall or 0
        )
        if status.state in ("restarting", "stuck"):
            log.info("supervisor.task_recovered", task=status.name, was=status.state)
            status.state = "running"
            metrics.TASK_UP.labels(self.service, status.name).set(1)

    def _stuck(self, status: TaskStatus, now: float) -> float | None:
        """How long work has waited without progress, when that is too long."""
        if status.waiting_since is None:
            return None
        waited = now - max(status.waiting_since, status.last_progress or status.started)
        return waited if waited > self._stuck_after else None

    async def _check(self) -> None:
        """Move tasks in and out of ``stuck`` and keep ``vigil_task_up`` true."""
        while True:
            now = self.now()
            for status in self._statuses.values():
                waited = self._stuck(status, now)
                if status.state == "running" and waited is not None:
                    status.state = "stuck"
                    log.error(
                        "supervisor.task_stuck",
                        task=status.name,
                        waited_seconds=round(waited, 1),
                        last_error=status.last_error,
                    )
                elif status.state == "stuck" and waited is None:
                    status.state = "running"
                    log.info("supervisor.task_recovered", task=status.name, was="stuck")
                metrics.TASK_UP.labels(self.service, status.name).set(
                    1 if status.state == "running" else 0
                )
            await asyncio.sleep(self._check_every)

    async def stop(self) -> None:
        """Cancel every task and wait until each has ended."""
        running = [*self._tasks.values(), *([self._checker] if self._checker else [])]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        self._tasks.clear()
        self._checker = None
        for status in self._statuses.values():
            status.state = "stopped"
            metrics.TASK_UP.labels(self.service, status.name).set(0)

    async def steps_ended(self, timeout: float = STEP_END_TIMEOUT_SECONDS) -> None:
        """Wait until no task is inside a step: what a library cancelled on stopping (a
        consumer's batch FastStream gave up waiting for) has unwound, its transaction
        rolled back and its connection returned, before the pool closes."""
        stepping = {task for task in self.stepping if task is not asyncio.current_task()}
        if not stepping:
            return
        _, pending = await asyncio.wait(stepping, timeout=timeout)
        if pending:
            log.error(
                "supervisor.steps_not_ended",
                tasks=sorted(task.get_name() for task in pending),
                waited_seconds=timeout,
            )

    async def __aenter__(self) -> Supervisor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @asynccontextmanager
    async def supervising(
        self, resources: AbstractAsyncContextManager[Resources]
    ) -> AsyncIterator[Resources]:
        """Open ``resources`` (a pool, a broker) for the tasks started inside the block;
        on the way out every task is cancelled and awaited (:meth:`stop`) before the
        resources close, so no step still uses them."""
        async with resources as opened, self:
            yield opened

    def problem(self) -> str | None:
        """Why the service is not ready because of its tasks (each one down or stuck)."""
        now = self.now()
        problems = []
        for status in self._statuses.values():
            if status.state == "stopped":
                continue
            if status.state == "restarting":
                problems.append(
                    f"task {status.name} is down: it died {status.restarts} time(s), last "
                    f"{status.last_error}; it is restarted with back-off (see /tasks and "
                    "the supervisor.task_died log line)"
                )
            elif status.state == "stuck" or self._stuck(status, now) is not None:
                waited = self._stuck(status, now) or 0.0
                last = f" (last error: {status.last_error})" if status.last_error else ""
                problems.append(
                    f"task {status.name} is stuck: no progress for {waited:.0f}s while work "
                    f"waits{last}"
                )
        return "; ".join(problems) or None

    def readiness(self, check: ReadinessCheck) -> ReadinessCheck:
        """``check`` with the tasks' problems first."""

        async def ready() -> str | None:
            return self.problem() or await check()

        return ready

    def report(self) -> list[dict[str, Any]]:
        """Every task's state for /tasks: names, counts, times and ids, no content."""
        now = self.now()
        return [
            {
                "task": status.name,
                "state": status.state,
                "restarts": status.restarts,
                "steps": status.steps,
                "step_failures": status.step_failures,
                "item_failures": status.item_failures,
                "last_progress": _iso(status.last_progress_wall),
                "seconds_since_progress": (
                    None if status.last_progress is None else round(now - status.last_progress, 1)
                ),
                "work_waiting": status.waiting_since is not None,
                "last_error": status.last_error,
                "failing_items": [
                    {"item": item, "reason": failing.reason, "failures": failing.failures}
                    for item, failing in status.failing.items()
                ],
            }
            for status in self._statuses.values()
        ]
