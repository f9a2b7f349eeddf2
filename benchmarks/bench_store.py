"""Event-store benchmark: append and verify 200,000 events, against a raw COPY of the same rows.

Prints figures; it asserts nothing (machines are shared and noisy, so compare the ratio
measured in one run). Runs on a private PostgreSQL cluster with fsync on.

    make bench-store                      # 200,000 events in batches of 1,000
    python benchmarks/bench_store.py --events 50000 --batch 500
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg

from shared import eventstore
from shared.db.migrate import upgrade
from shared.db.pool import create_pool
from shared.events import LabResultReported, wrap
from shared.eventstore.verify import verify_chain
from vigil.devstack.ports import free_port
from vigil.devstack.postgres import PrivateCluster

COLUMNS = (
    "position, event_id, stream_id, stream_version, type, schema_version, study_id, subject_id, "
    "clinical_time, recorded_at, source, envelope_json, payload_json, prev_hash, hash"
)


def make_events(count: int) -> list[eventstore.NewEvent]:
    start = datetime(2026, 1, 5, 8, tzinfo=UTC)
    loincs = ("718-7", "1742-6", "1920-8", "2160-0", "751-8")
    events = []
    for n in range(count):
        payload = LabResultReported(
            study_id="NCT05262686",
            subject_id=f"{n % 2000:05d}",
            loinc_code=loincs[n % len(loincs)],
            value=Decimal(n % 997) / 10,
            unit="g/dL",
            reference_low=Decimal("12.0"),
            reference_high=Decimal("16.0"),
            collected_at=start + timedelta(minutes=n),
            source_message_id=f"BENCH-{n}",
        )
        events.append(eventstore.NewEvent(wrap(payload, source="/bench")))
    return events


async def bench(events: int, batch: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="vigil-bench-", dir="/tmp"))
    os.chmod(folder, 0o755)  # noqa: S103 - the postgres account must reach the cluster folder
    cluster = PrivateCluster(folder / "data", free_port(), fsync=True, log_file=folder / "log")
    cluster.start()
    try:
        await upgrade(cluster.dsn)
        connection = await asyncpg.connect(cluster.dsn)
        await connection.execute(
            "CREATE TABLE events_raw (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
            "INCLUDING GENERATED "
            "INCLUDING INDEXES)"
        )
        print(f"preparing {events:,} events (batches of {batch:,})...", flush=True)
        prepared = make_events(events)
        batches = [prepared[i : i + batch] for i in range(0, len(prepared), batch)]
        gc.freeze()  # the prepared inputs are static: keep the collector from rescanning them

        began = time.perf_counter()
        for chunk in batches:
            async with connection.transaction():
                await eventstore.append(connection, chunk)
        append_seconds = time.perf_counter() - began

        rows = await connection.fetch(f"SELECT {COLUMNS} FROM events ORDER BY position")
        records = [tuple(row) for row in rows]
        raw_batches = [records[i : i + batch] for i in range(0, len(records), batch)]
        columns = [c.strip() for c in COLUMNS.split(",")]
        began = time.perf_counter()
        for chunk in raw_batches:
            async with connection.transaction():
                await connection.copy_records_to_table("events_raw", records=chunk, columns=columns)
        copy_seconds = time.perf_counter() - began

        await connection.close()
        pool = await create_pool(cluster.dsn, max_size=2)
        began = time.perf_counter()
        fresh_report = await verify_chain(pool)
        fresh_seconds = time.perf_counter() - began
        # a daily verification reads rows that autovacuum has already settled
        await pool.execute("VACUUM (ANALYZE) events")
        await pool.execute("CHECKPOINT")
        began = time.perf_counter()
        report = await verify_chain(pool)
        verify_seconds = time.perf_counter() - began
        await pool.close()
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)

    append_rate = events / append_seconds
    copy_rate = events / copy_seconds
    verify_rate = report.checked / verify_seconds
    fresh_rate = fresh_report.checked / fresh_seconds
    ratio = append_rate / copy_rate
    print(f"append : {append_rate:>10,.0f} events/s  ({append_seconds:.2f} s)")
    print(f"raw COPY: {copy_rate:>9,.0f} events/s  ({copy_seconds:.2f} s)")
    print(
        f"verify : {fresh_rate:>10,.0f} events/s  ({fresh_seconds:.2f} s, ok={fresh_report.ok}) "
        "first read of freshly written rows"
    )
    print(
        f"verify : {verify_rate:>10,.0f} events/s  ({verify_seconds:.2f} s, ok={report.ok}) "
        "after VACUUM, as a scheduled run finds them"
    )
    met = "met" if ratio >= 0.5 else "MISSED"
    print(f"append / raw COPY = {ratio:.2f}  (target >= 0.50: {met})")
    target = "met" if verify_rate >= 200_000 else "MISSED"
    print(f"verify target >= 200,000 events/s: {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(bench(args.events, args.batch))


if __name__ == "__main__":
    main()
