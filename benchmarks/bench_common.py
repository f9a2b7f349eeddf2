"""What the benchmarks share: finding and attaching py-spy, stopping what they started,
their working folder, and percentiles. Imported by the benchmark scripts (run from the
repository root as ``python benchmarks/bench_*.py``, so this folder is on the path)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer

from shared.kafka_security import kafka_client_options
from shared.settings import CommonSettings

# stores one batch of consumed records on the connection, inside the batch's transaction
Store = Callable[[asyncpg.Connection, list[Any]], Awaitable[None]]


async def consume_and_store(
    topics: Sequence[str],
    settings: CommonSettings,
    dsn: str,
    *,
    group: str,
    expected: int,
    batch: int,
    store: Store,
) -> float:
    """Events/s of a bare consumer of ``topics`` (on ``settings``' broker) that stores
    each batch in one transaction and commits its offsets after it: the ceilings' loop. The
    clock starts at the first batch and stops once ``expected`` records are stored."""
    connection = await asyncpg.connect(dsn)
    consumer = AIOKafkaConsumer(
        *topics,
        **kafka_client_options(settings),
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=batch,
    )
    await consumer.start()
    done, first, last = 0, 0.0, 0.0
    try:
        while done < expected:
            fetched = await consumer.getmany(timeout_ms=1000, max_records=batch)
            records = [record for some in fetched.values() for record in some]
            if not records:
                continue
            first = first or time.perf_counter()
            async with connection.transaction():
                await store(connection, records)
            await consumer.commit()
            done += len(records)
            last = time.perf_counter()
    finally:
        await consumer.stop()
        await connection.close()
    return expected / (last - first)


async def copy_raw(connection: asyncpg.Connection, records: list[Any]) -> None:
    """The ceiling's store: the records' coordinates and values COPYed into ``bench_raw``."""
    rows = [(r.topic, r.partition, r.offset, r.value) for r in records]
    await connection.copy_records_to_table("bench_raw", records=rows)


def py_spy() -> str:
    """py-spy: BENCH_PY_SPY, else beside this Python (the venv's, from the dev extras), else
    on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    found = os.environ.get("BENCH_PY_SPY") or (
        str(beside) if beside.exists() else shutil.which("py-spy")
    )
    if not found:
        raise SystemExit("--profile needs py-spy: install it, or point BENCH_PY_SPY at it")
    return found


def start_profiler(
    pid: int, output: str | Path, *, form: str = "raw", log: Path | None = None
) -> subprocess.Popen[bytes]:
    """py-spy attached to ``pid``, sampling without pausing it (a pausing sampler took a
    third off the rules' rate); it writes ``output`` when stopped with SIGINT."""
    sink = log.open("wb") if log is not None else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            [py_spy(), "record", "--nonblocking", "-f", form, "-o", str(output), "--pid", str(pid)],
            stdout=sink,
            stderr=sink,
        )
    finally:
        if log is not None:
            sink.close()  # type: ignore[union-attr]


def stop_processes(processes: Iterable[subprocess.Popen[bytes]], timeout: float = 20) -> None:
    """SIGINT each in turn (profilers first in the list: they write their file on SIGINT),
    killing any that does not end within ``timeout`` seconds."""
    for process in processes:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()


def remove_folder(folder: Path) -> None:
    """The run's working folder goes, unless BENCH_KEEP is set (then its path is printed)."""
    if os.environ.get("BENCH_KEEP"):
        print(f"kept {folder}")
    else:
        shutil.rmtree(folder, ignore_errors=True)


def percentile(values: list[float], p: float) -> float:
    """The value at fraction ``p`` of the sorted values (nan for none)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")
