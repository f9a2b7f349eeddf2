"""Found while breaking issue 16's typed service state from outside: every service's
``/tasks`` lists the supervised tasks the README names for it (Observability, *Supervised
tasks*), each running once the stack is up, and ``/readyz`` is 200."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.private_stack import private_stack
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

README_TASKS = {
    "ingest": {"receipt-writer", "redrive", "key-refresh", "metrics"},
    "rules": {
        "outbox-relay", "projection.subject_state", "watchdog", "metrics", "anchor",
        "facts-consumer",
    },
    "notifier": {
        "delivery-worker", "timers", "catch-up", "projection.signal_inbox", "metrics",
        "signal-consumer",
    },
}  # fmt: skip


async def test_each_service_lists_and_runs_the_tasks_the_readme_names(
    tmp_path: Path, fresh_dsn: str
) -> None:
    async with private_stack(tmp_path, fresh_dsn) as stack:
        for command, expected in README_TASKS.items():

            async def all_running(command: str = command) -> dict[str, str]:
                tasks = await stack.tasks(command)
                states = {name: str(task["state"]) for name, task in tasks.items()}
                return states if set(states.values()) == {"running"} else {}

            states = await eventually(all_running, timeout=60, what=f"{command}'s tasks running")
            assert set(states) == expected, command
            assert (await stack.ready(command))[0] == 200, command
