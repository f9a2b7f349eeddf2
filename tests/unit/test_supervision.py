"""The shared supervisor: tasks that die are restarted and counted, stuck tasks are seen,
stop awaits everything, and one failed item is set aside without stopping the task."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from shared.background import DrainLoop
from shared.failures import (
    BROKER_OUTAGES,
    OUTAGES,
    failure_summary,
    failure_traceback,
    is_outage,
    outages_and,
)
from shared.kafka import lag_sampler
from shared.supervision import Progress, Supervisor
from tests.support.waiting import eventually
from tests.unit.test_metrics import FakeConsumer


@pytest.fixture
async def supervisor(request: pytest.FixtureRequest) -> AsyncIterator[Supervisor]:
    running = Supervisor(
        f"test-{request.node.name}"[:60],
        stuck_after=0.3,
        restart_initial=0.05,
        restart_max=0.2,
        check_every=0.02,
    )
    async with running:
        yield running


def sample(name: str, supervisor: Supervisor, task: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"service": supervisor.service, "task": task})


def state(supervisor: Supervisor, task: str) -> str:
    return next(t["state"] for t in supervisor.report() if t["task"] == task)


async def test_a_task_that_dies_is_logged_with_its_traceback_counted_and_restarted(
    supervisor: Supervisor,
) -> None:
    runs: list[int] = []
    term = "".join(["sec", "ret"])  # a value from a message, not from the source

    async def flaky(progress: Progress) -> None:
        runs.append(1)
        if len(runs) < 3:
            raise ValueError(f"{term} patient text must not be logged")
        progress.idle()
        await asyncio.Event().wait()

    with capture_logs() as logs:
        supervisor.start("flaky", flaky)
        await eventually(lambda: asyncio.sleep(0, len(runs) == 3), timeout=10, what="third run")
        await eventually(
            lambda: asyncio.sleep(0, state(supervisor, "flaky") == "running"), timeout=10
        )

    died = [line for line in logs if line["event"] == "supervisor.task_died"]
    assert len(died) == 2
    assert "ValueError" in died[0]["traceback"]
    assert "in flaky" in died[0]["traceback"]
    assert all("secret" not in str(line) for line in logs)
    assert sample("vigil_task_restarts_total", supervisor, "flaky") == 2
    assert sample("vigil_task_up", supervisor, "flaky") == 1
    assert supervisor.problem() is None


async def test_a_task_that_died_is_down_in_readiness_until_it_completes_a_step(
    supervisor: Supervisor,
) -> None:
    allowed = asyncio.Event()

    async def crashes_until_allowed(progress: Progress) -> None:
        if not allowed.is_set():
            raise RuntimeError("boom")
        progress.done()
        await asyncio.Event().wait()

    supervisor.start("delivery-worker", crashes_until_allowed)
    await eventually(
        lambda: asyncio.sleep(0, state(supervisor, "delivery-worker") == "restarting"),
        timeout=10,
    )
    problem = supervisor.problem()
    assert problem is not None
    assert "delivery-worker is down" in problem
    assert "RuntimeError" in problem
    assert sample("vigil_task_up", supervisor, "delivery-worker") == 0

    allowed.set()

    await eventually(lambda: asyncio.sleep(0, supervisor.problem() is None), timeout=10)
    assert sample("vigil_task_up", supervisor, "delivery-worker") == 1


async def test_the_back_off_between_restarts_doubles_up_to_its_limit(
    supervisor: Supervisor,
) -> None:
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def dies(progress: Progress) -> None:
        starts.append(loop.time())
        raise RuntimeError("again")

    supervisor.start("dies", dies)
    await eventually(lambda: asyncio.sleep(0, len(starts) >= 5), timeout=10)

    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps[0] >= 0.05
    assert gaps[1] >= 0.1
    assert gaps[2] >= 0.2
    assert all(gap < 0.2 * 10 for gap in gaps)  # capped, not growing without bound


async def test_work_waiting_without_progress_makes_a_task_stuck_until_it_moves(
    supervisor: Supervisor,
) -> None:
    release = asyncio.Event()

    async def hangs(progress: Progress) -> None:
        progress.working()
        await release.wait()
        progress.done()
        await asyncio.Event().wait()

    with capture_logs() as logs:
        supervisor.start("projection", hangs)
        await eventually(
            lambda: asyncio.sleep(0, state(supervisor, "projection") == "stuck"), timeout=10
        )
        problem = supervisor.problem()
        assert problem is not None
        assert "projection is stuck" in problem
        assert sample("vigil_task_up", supervisor, "projection") == 0

        release.set()
        await eventually(
            lambda: asyncio.sleep(0, state(supervisor, "projection") == "running"), timeout=10
        )

    assert any(line["event"] == "supervisor.task_stuck" for line in logs)
    assert supervisor.problem() is None
    assert sample("vigil_task_last_progress_timestamp_seconds", supervisor, "projection")


async def test_an_idle_task_with_no_work_waiting_is_never_stuck(supervisor: Supervisor) -> None:
    async def idle(progress: Progress) -> None:
        progress.idle()
        await asyncio.Event().wait()

    supervisor.start("idle", idle)
    await asyncio.sleep(0.6)  # twice the stuck time, and nothing waits

    assert state(supervisor, "idle") == "running"
    assert supervisor.problem() is None


async def test_a_watched_consumer_whose_batches_keep_failing_becomes_stuck(
    supervisor: Supervisor,
) -> None:
    progress = supervisor.watch("facts-consumer")
    for _ in range(3):
        with pytest.raises(OverflowError), progress.step():
            raise OverflowError("date value out of range")

    await eventually(
        lambda: asyncio.sleep(0, state(supervisor, "facts-consumer") == "stuck"), timeout=10
    )
    report = next(t for t in supervisor.report() if t["task"] == "facts-consumer")
    assert report["step_failures"] == 3
    assert report["last_error"].startswith("OverflowError at tests/unit/test_supervision.py")
    assert sample("vigil_task_step_failures_total", supervisor, "facts-consumer") == 3

    with progress.step():
        pass

    await eventually(
        lambda: asyncio.sleep(0, state(supervisor, "facts-consumer") == "running"), timeout=10
    )


async def test_a_watched_consumer_never_called_while_records_wait_becomes_stuck(
    supervisor: Supervisor,
) -> None:
    """A consumer whose handler is never called again (its fetches failing for ever) is
    seen by its lag: records behind the committed offset are work waiting."""
    progress = supervisor.watch("signal-consumer")
    partition = TopicPartition("unit.signals", 0)
    behind = FakeConsumer({partition: 7}, {partition: 3})
    sample_lag = lag_sampler(
        SimpleNamespace(consumer=behind), group="unit-stuck", progress=progress
    )

    await sample_lag()

    await eventually(
        lambda: asyncio.sleep(0, state(supervisor, "signal-consumer") == "stuck"), timeout=10
    )
    with progress.step():  # the handler runs again and commits
        pass
    await lag_sampler(
        SimpleNamespace(consumer=FakeConsumer({partition: 7}, {partition: 7})),
        group="unit-stuck",
        progress=progress,
    )()
    await asyncio.sleep(0.6)  # twice the stuck time: caught up, nothing waits
    assert state(supervisor, "signal-consumer") == "running"


async def test_stop_cancels_and_awaits_every_task() -> None:
    ended: list[str] = []

    async def cleans_up(progress: Progress) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.05)  # cleanup that takes a while
            ended.append(progress.name)

    supervisor = Supervisor("test-stop", check_every=0.01)
    supervisor.start("a", cleans_up)
    supervisor.start("b", cleans_up)
    await asyncio.sleep(0.01)

    await supervisor.stop()

    assert sorted(ended) == ["a", "b"]
    assert {t["state"] for t in supervisor.report()} == {"stopped"}
    assert all(not task.get_name().startswith("test-stop") for task in asyncio.all_tasks())


async def test_one_failed_item_is_listed_and_the_rest_go_on(supervisor: Supervisor) -> None:
    progress = supervisor.watch("timers")
    handled = []
    for item in ("signal-1", "signal-2", "signal-3"):
        with progress.item(item):
            if item == "signal-2":
                raise KeyError("a value from the message")
            handled.append(item)

    assert handled == ["signal-1", "signal-3"]
    report = next(t for t in supervisor.report() if t["task"] == "timers")
    assert report["item_failures"] == 1
    (failing,) = report["failing_items"]
    assert failing["item"] == "signal-2"
    assert failing["reason"].startswith("KeyError at tests/unit/test_supervision.py")
    assert "a value" not in str(report)

    with progress.item("signal-2"):
        pass
    report = next(t for t in supervisor.report() if t["task"] == "timers")
    assert report["failing_items"] == []


async def test_an_outage_inside_an_item_fails_the_whole_step(supervisor: Supervisor) -> None:
    progress = supervisor.watch("relay")
    with pytest.raises(ConnectionRefusedError), progress.item("row-1"):
        raise ConnectionRefusedError("database away")

    assert next(t for t in supervisor.report() if t["task"] == "relay")["item_failures"] == 0


async def test_a_drain_loop_crash_is_restarted_and_wake_up_still_runs_a_step(
    supervisor: Supervisor,
) -> None:
    calls: list[int] = []

    async def step(progress: Progress) -> int:
        calls.append(1)
        if len(calls) == 2:
            raise LookupError("a bug in the step")
        return 0

    loop = DrainLoop("test.loop", step, retryable=(ConnectionError,), poll_seconds=3600)
    supervisor.start("loop", loop.run)
    await eventually(lambda: asyncio.sleep(0, len(calls) == 1), timeout=10)

    loop.wake()  # second step crashes; the supervisor restarts the loop, which steps again
    await eventually(lambda: asyncio.sleep(0, len(calls) == 3), timeout=10)
    await eventually(lambda: asyncio.sleep(0, state(supervisor, "loop") == "running"), timeout=10)
    assert sample("vigil_task_restarts_total", supervisor, "loop") == 1

    loop.wake()
    await eventually(lambda: asyncio.sleep(0, len(calls) == 4), timeout=10)


def test_a_failure_summary_names_type_and_place_but_never_the_message() -> None:
    try:
        "é".encode("ascii")
    except UnicodeEncodeError as error:
        summary = failure_summary(error)
        trace = failure_traceback(error)

    assert summary.startswith("UnicodeEncodeError at tests/unit/test_supervision.py:")
    assert "é" not in summary
    assert "é" not in trace.replace('"é".encode', "")
    assert "ordinal not in range" not in trace


def test_outages_are_told_apart_from_bad_items() -> None:
    from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

    assert is_outage(ConnectionRefusedError())
    assert is_outage(KafkaConnectionError())
    assert not is_outage(MessageSizeTooLargeError())
    assert not is_outage(ValueError())


def test_the_one_list_of_retryable_errors_grows_only_by_name() -> None:
    from aiokafka.errors import MessageSizeTooLargeError

    class ReportNotSent(Exception):
        pass

    assert set(OUTAGES) < set(BROKER_OUTAGES)
    assert isinstance(MessageSizeTooLargeError(), BROKER_OUTAGES)  # a broker step retries it
    assert not isinstance(MessageSizeTooLargeError(), OUTAGES)
    assert outages_and(ReportNotSent) == (*OUTAGES, ReportNotSent)


async def test_supervising_stops_every_task_before_what_they_use_closes() -> None:
    happened: list[str] = []

    @asynccontextmanager
    async def resources() -> AsyncIterator[str]:
        yield "pool"
        happened.append("pool closed")

    async def mid_step(progress: Progress) -> None:
        with progress.step():
            try:
                await asyncio.Event().wait()
            finally:
                await asyncio.sleep(0.05)  # a send or a rollback that takes a while
                happened.append("step ended")

    supervisor = Supervisor("test-supervising", check_every=0.01)
    async with supervisor.supervising(resources()) as pool:
        assert pool == "pool"
        supervisor.start("sender", mid_step)
        await asyncio.sleep(0.01)

    assert happened == ["step ended", "pool closed"]


async def test_stopping_waits_for_a_watched_step_its_library_cancelled_without_awaiting() -> None:
    happened: list[str] = []
    supervisor = Supervisor("test-watched-stop", check_every=0.01)
    progress = supervisor.watch("signal-consumer")
    started = asyncio.Event()

    async def consume_loop() -> None:  # what FastStream runs, and cancels on stop
        with progress.step():
            started.set()
            try:
                await asyncio.Event().wait()
            finally:
                await asyncio.sleep(0.05)
                happened.append("batch unwound")

    library_task = asyncio.create_task(consume_loop())
    await started.wait()
    library_task.cancel()  # and not awaited, as FastStream's subscriber.stop() does

    await supervisor.stop()
    await supervisor.steps_ended()
    happened.append("pool closed")

    assert happened == ["batch unwound", "pool closed"]
    assert library_task.cancelled()
