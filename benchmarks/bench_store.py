"""Event-store benchmark: append and verify events, against raw COPYs of the same rows.

Prints figures; it asserts nothing (machines are shared and noisy, so compare the ratios
measured in one run). Runs on a private PostgreSQL cluster with fsync on.

1. The audit-log path: ``--events`` lab results are parsed from the JSON bytes Kafka
   carries (``Envelope.from_json``, timed on its own) and appended in batches of
   ``--batch`` through ``eventstore.append`` (advisory lock, id and version checks, hash
   chain, one transaction per batch). Beside it, in the same run, two ceilings:
   - ``raw COPY``: the very rows the append stored, copied in the same batches into a
     table shaped like ``events`` (same columns, generated jsonb, every index) with no
     checks and no hashing: the database's share of the append;
   - ``bare COPY``: the same rows into a plain table (no index, no generated column):
     what COPY of these bytes costs with nothing to maintain.
2. Verification of the whole chain (``verify_chain``), freshly written and after VACUUM.
3. Growth (``--grow 1000000,5000000``): the store is filled up to each size with rows that
   form a valid chain (generated and COPYed under the append lock, much faster than the
   real append), then at each size: the real append of ``--grow-batches`` more batches,
   verification of the whole store, EXPLAIN ANALYZE of the append's lookups (id, head,
   stream versions) and the on-disk bytes per event (table, TOAST and indexes).

    make bench-store                                   # 200,000 events in batches of 1,000
    python benchmarks/bench_store.py --events 50000 --batch 500
    python benchmarks/bench_store.py --events 20000 --grow 1000000,5000000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

from shared import eventstore
from shared.db.migrate import upgrade
from shared.db.pool import create_pool
from shared.events import Envelope, LabResultReported, schema_version, wrap
from shared.eventstore.canonical import (
    GENESIS_HASH,
    canonical_bytes,
    chain_hash,
    epoch_micros,
)
from shared.eventstore.postgres_append import APPEND_LOCK
from shared.eventstore.verify import verify_chain
from vigil.devstack.ports import free_port
from vigil.devstack.postgres import PrivateCluster

COLUMNS = (
    "position, event_id, stream_id, stream_version, type, schema_version, study_id, subject_id, "
    "clinical_time, recorded_at, source, envelope_json, payload_json, prev_hash, hash"
)
COLUMN_NAMES = [c.strip() for c in COLUMNS.split(",")]
STUDY = "NCT05262686"
START = datetime(2026, 1, 5, 8, tzinfo=UTC)
LOINCS = ("718-7", "1742-6", "1920-8", "2160-0", "751-8")
BARE_TABLE = (
    "CREATE TABLE events_bare (position bigint, event_id uuid, stream_id text, "
    "stream_version integer, type text, schema_version integer, study_id text, "
    "subject_id text, clinical_time timestamptz, recorded_at timestamptz, source text, "
    "envelope_json text, payload_json text, prev_hash bytea, hash bytea)"
)


def make_events(count: int, *, first: int = 0, subjects: int = 2000) -> list[bytes]:
    """Lab results as the JSON bytes Kafka carries (each ``first + n`` is its own fact)."""
    events = []
    for n in range(first, first + count):
        payload = LabResultReported(
            study_id=STUDY,
            subject_id=f"{n % subjects:05d}",
            loinc_code=LOINCS[n % len(LOINCS)],
            value=Decimal(n % 997) / 10,
            unit="g/dL",
            reference_low=Decimal("12.0"),
            reference_high=Decimal("16.0"),
            collected_at=START + timedelta(minutes=n),
            source_message_id=f"BENCH-{n}",
        )
        events.append(wrap(payload, source="/bench").to_json())
    return events


def parse(raw: list[bytes]) -> list[eventstore.NewEvent]:
    return [eventstore.NewEvent(Envelope.from_json(value)) for value in raw]


@dataclass
class Cost:
    """What a phase took: wall seconds, and CPU seconds of this process (the client) and of
    the connection's PostgreSQL backend (the server). CPU time is what a loaded machine
    disturbs least: wall time also counts waiting for the cores other work holds."""

    wall: float = 0.0
    client: float = 0.0
    server: float = 0.0

    def per_event(self, count: int) -> str:
        return (
            f"cpu {1e6 * self.client / count:,.0f} + {1e6 * self.server / count:,.0f} us/event "
            "(client + server)"
        )

    @property
    def cpu(self) -> float:
        return self.client + self.server


def backend_cpu(connection: asyncpg.Connection) -> float:
    """CPU seconds the connection's backend process has used (Linux /proc)."""
    fields = Path(f"/proc/{connection.get_server_pid()}/stat").read_text().rsplit(")", 1)[1]
    utime, stime = fields.split()[11:13]
    return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")


class Meter:
    """Adds a phase's wall, client and server time to a Cost."""

    def __init__(self, connection: asyncpg.Connection, cost: Cost) -> None:
        self._connection, self._cost = connection, cost

    def __enter__(self) -> None:
        self._began = (time.perf_counter(), time.process_time(), backend_cpu(self._connection))

    def __exit__(self, *_: object) -> None:
        wall, client, server = self._began
        self._cost.wall += time.perf_counter() - wall
        self._cost.client += time.process_time() - client
        self._cost.server += backend_cpu(self._connection) - server


async def append_all(
    connection: asyncpg.Connection, batches: list[list[bytes]]
) -> tuple[Cost, Cost]:
    """Parse each batch (measured on its own), then append each in its own transaction;
    returns what parsing and appending cost."""
    parsed, parsing, appending = [], Cost(), Cost()
    for chunk in batches:
        with Meter(connection, parsing):
            parsed.append(parse(chunk))
    with Meter(connection, appending):
        for events in parsed:
            async with connection.transaction():
                await eventstore.append(connection, events)
    return parsing, appending


async def copy_cost(
    connection: asyncpg.Connection, table: str, rows: list[tuple[Any, ...]], batch: int
) -> Cost:
    cost = Cost()
    with Meter(connection, cost):
        for i in range(0, len(rows), batch):
            async with connection.transaction():
                await connection.copy_records_to_table(
                    table, records=rows[i : i + batch], columns=COLUMN_NAMES
                )
    return cost


async def verify_rate(pool: asyncpg.Pool) -> tuple[float, int, bool]:
    began = time.perf_counter()
    report = await verify_chain(pool)
    seconds = time.perf_counter() - began
    return report.checked / seconds, report.checked, report.ok


# --- growth: a store of millions of events, filled fast ----------------------------------

ENVELOPE = (
    '{{"specversion":"1.0","id":"{id}","source":"/bench","type":'
    '"org.vigil.lab_result.reported.v1","subject":"' + STUDY + '/{subject}","time":'
    '"2026-12-04T02:13:00.321935Z","datacontenttype":"application/json","studyid":"'
    + STUDY
    + '","correlationid":"{id}"}}'
)
PAYLOAD = (
    '{{"abnormal_flags":[],"analyte_text":null,"canonical_unit":null,"canonical_value":null,'
    '"collected_at":"{collected}","collected_precision":null,"comparator":null,'
    '"local_code":null,"local_system":null,"loinc_code":"{loinc}","observation_key":null,'
    '"qualitative":null,"reference_high":16,"reference_low":12,"result_status":"F",'
    '"source_message_id":"FILL-{n}","study_id":"' + STUDY + '","subject_id":"{subject}",'
    '"unit":"g/dL","unmapped":false,"value":{value},"value_text":null}}'
)
RESULT_TYPE = "org.vigil.lab_result.reported.v1"


async def fill_rows(
    position: int,
    prev_hash: bytes,
    count: int,
    versions: dict[str, int],
    subjects: int,
    recorded_at: datetime,
    last: list[bytes],
) -> AsyncIterator[tuple[Any, ...]]:
    """``count`` lab-result rows after ``position`` that chain on from ``prev_hash``, shaped
    (and sized) like the real append's; ``last[0]`` ends as the chain's head hash."""
    recorded_us = epoch_micros(recorded_at)
    assert recorded_us is not None
    schema = schema_version(RESULT_TYPE)
    bits = random.Random(position).getrandbits
    for p in range(position + 1, position + count + 1):
        event_id = uuid.UUID(int=bits(128), version=4)
        text_id = str(event_id)
        subject = f"{p % subjects:05d}"
        stream = f"subject-{STUDY}/{subject}"
        version = versions[stream] = versions.get(stream, 0) + 1
        clinical = START + timedelta(minutes=p)
        envelope = ENVELOPE.format(id=text_id, subject=subject)
        payload = PAYLOAD.format(
            collected=clinical.strftime("%Y-%m-%dT%H:%M:%SZ"),
            loinc=LOINCS[p % len(LOINCS)],
            n=p,
            subject=subject,
            value=f"{(p % 997) / 10}",
        )
        canonical = canonical_bytes(
            position=p,
            event_id=text_id,
            stream_id=stream,
            stream_version=version,
            type=RESULT_TYPE,
            schema_version=schema,
            clinical_time_us=epoch_micros(clinical),
            recorded_at_us=recorded_us,
            source="/bench",
            envelope_text=envelope,
            payload_text=payload,
        )
        row_hash = chain_hash(prev_hash, canonical)
        yield (
            p,
            event_id,
            stream,
            version,
            RESULT_TYPE,
            schema,
            STUDY,
            subject,
            clinical,
            recorded_at,
            "/bench",
            envelope,
            payload,
            prev_hash,
            row_hash,
        )
        prev_hash = last[0] = row_hash


async def fill(connection: asyncpg.Connection, target: int, subjects: int, chunk: int) -> float:
    """Grow the store to ``target`` events; returns the seconds it took."""
    began = time.perf_counter()
    # plain indexes are built once afterwards, as a restore would (far faster than keeping
    # them row by row); the constraints' indexes (position, event id, stream version) stay
    plain = await connection.fetch(
        "SELECT indexrelid::regclass::text AS name, pg_get_indexdef(indexrelid) AS definition "
        "FROM pg_index WHERE indrelid = 'events'::regclass AND NOT indisunique"
    )
    for index in plain:
        await connection.execute(f"DROP INDEX {index['name']}")
    versions = {
        row["stream_id"]: row["v"]
        for row in await connection.fetch(
            "SELECT stream_id, max(stream_version) AS v FROM events GROUP BY stream_id"
        )
    }
    while True:
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
            head = await connection.fetchrow(
                "SELECT position, hash FROM events ORDER BY position DESC LIMIT 1"
            )
            position = head["position"] if head else 0
            if position >= target:
                break
            prev = bytes(head["hash"]) if head else GENESIS_HASH
            last = [prev]
            now = await connection.fetchval("SELECT clock_timestamp()")
            rows = fill_rows(
                position, prev, min(chunk, target - position), versions, subjects, now, last
            )
            await connection.copy_records_to_table("events", records=rows, columns=COLUMN_NAMES)
        print(f"  filled to {min(position + chunk, target):,}", end="\r", flush=True)
    for index in plain:
        await connection.execute(index["definition"])
    return time.perf_counter() - began


APPEND_QUERIES = {
    "event ids": (
        "SELECT event_id, position, stream_id, stream_version, type, payload_json "
        "FROM events WHERE event_id = ANY($1::uuid[])"
    ),
    "head": (
        "SELECT clock_timestamp() AS now, h.position, h.hash FROM (SELECT 1) AS one "
        "LEFT JOIN LATERAL (SELECT position, hash FROM events ORDER BY position DESC LIMIT 1) "
        "AS h ON true"
    ),
    "stream versions": (
        "SELECT s AS stream_id, (SELECT max(stream_version) FROM events "
        "WHERE stream_id = s) AS version FROM unnest($1::text[]) AS s"
    ),
}


async def explain_append(connection: asyncpg.Connection, events: list[eventstore.NewEvent]) -> None:
    """EXPLAIN ANALYZE of the lookups the append makes for one batch (the same SQL)."""
    ids = [event.envelope.id for event in events]
    streams = sorted({event.envelope.payload().stream_id for event in events})
    arguments: dict[str, list[Any]] = {"event ids": [ids], "head": [], "stream versions": [streams]}
    for name, sql in APPEND_QUERIES.items():
        plan = await connection.fetch(
            f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", *arguments[name]
        )
        lines = [row[0] for row in plan]
        scans = [line.strip() for line in lines if "Scan" in line or "Limit" in line]
        footer = next(line for line in lines if line.startswith("Execution Time"))
        buffers = next((line.strip() for line in lines if "Buffers" in line), "")
        print(f"    {name:15}: {footer}; {buffers}")
        for scan in scans[:3]:
            print(f"      {scan}")


async def sizes(connection: asyncpg.Connection) -> None:
    row = await connection.fetchrow(
        "SELECT count(*) AS n, pg_total_relation_size('events') AS total, "
        "pg_relation_size('events') AS heap, pg_indexes_size('events') AS indexes, "
        "pg_table_size('events') - pg_relation_size('events') AS toast_etc FROM events"
    )
    n = row["n"]
    print(
        f"    on disk: {row['total'] / n:,.0f} bytes/event in all (heap {row['heap'] / n:,.0f}, "
        f"TOAST/FSM/VM {row['toast_etc'] / n:,.0f}, indexes {row['indexes'] / n:,.0f}); "
        f"{row['total'] / 2**30:.2f} GiB for {n:,} events"
    )
    indexes = await connection.fetch(
        "SELECT indexrelid::regclass::text AS name, pg_relation_size(indexrelid) AS size "
        "FROM pg_index WHERE indrelid = 'events'::regclass ORDER BY 2 DESC"
    )
    print("    indexes: " + ", ".join(f"{r['name']} {r['size'] / n:,.0f}" for r in indexes))


async def grow(
    cluster: PrivateCluster, targets: list[int], batch: int, batches: int, subjects: int
) -> None:
    connection = await asyncpg.connect(cluster.dsn)
    pool = await create_pool(cluster.dsn, max_size=2)
    try:
        for n, target in enumerate(targets):
            print(f"growth: filling the store to {target:,} events...", flush=True)
            seconds = await fill(connection, target, subjects, chunk=50_000)
            print(f"  filled in {seconds:,.0f} s" + " " * 20)
            await connection.execute("VACUUM (ANALYZE) events")
            await connection.execute("CHECKPOINT")
            first = 10_000_000 + n * batch * batches
            raw = make_events(batch * batches, first=first, subjects=subjects)
            chunks = [raw[i : i + batch] for i in range(0, len(raw), batch)]
            _, appending = await append_all(connection, chunks)
            count = len(raw)
            print(f"  at {target:,} events:")
            print(
                f"    append         : {count / appending.wall:>9,.0f} events/s "
                f"({batches} batches of {batch:,}); {appending.per_event(count)}"
            )
            copy_rows = [
                tuple(row)
                for row in await connection.fetch(
                    f"SELECT {COLUMNS} FROM events ORDER BY position DESC LIMIT $1", count
                )
            ]
            await connection.execute("TRUNCATE events_raw")
            ceiling = await copy_cost(connection, "events_raw", copy_rows[::-1], batch)
            print(
                f"    raw COPY       : {count / ceiling.wall:>9,.0f} events/s "
                f"{ceiling.per_event(count)} (the same rows, into an empty events-shaped table)"
            )
            print(
                f"    append / raw COPY = {ceiling.wall / appending.wall:.2f} wall, "
                f"{ceiling.cpu / appending.cpu:.2f} cpu"
            )
            probe = parse(make_events(batch, first=first + count, subjects=subjects))
            await explain_append(connection, probe)
            rate, checked, ok = await verify_rate(pool)
            print(f"    verify         : {rate:>9,.0f} events/s ({checked:,} events, ok={ok})")
            await sizes(connection)
    finally:
        await pool.close()
        await connection.close()


async def bench(
    events: int,
    batch: int,
    targets: list[int],
    grow_batches: int,
    subjects: int,
    shared_buffers: str,
) -> None:
    folder = Path(tempfile.mkdtemp(prefix="vigil-bench-", dir="/tmp"))
    os.chmod(folder, 0o755)  # noqa: S103 - the postgres account must reach the cluster folder
    cluster = PrivateCluster(
        folder / "data",
        free_port(),
        fsync=True,
        log_file=folder / "log",
        settings=(f"shared_buffers={shared_buffers}",),
    )
    cluster.start()
    try:
        await upgrade(cluster.dsn)
        connection = await asyncpg.connect(cluster.dsn)
        await connection.execute(
            "CREATE TABLE events_raw (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
            "INCLUDING GENERATED INCLUDING INDEXES INCLUDING STORAGE)"
        )
        await connection.execute(BARE_TABLE)
        print(f"preparing {events:,} events (batches of {batch:,})...", flush=True)
        raw = make_events(events, subjects=subjects)
        batches = [raw[i : i + batch] for i in range(0, len(raw), batch)]
        gc.freeze()  # the prepared inputs are static: keep the collector from rescanning them

        parsing, appending = await append_all(connection, batches)
        rows = [
            tuple(row)
            for row in await connection.fetch(f"SELECT {COLUMNS} FROM events ORDER BY position")
        ]
        raw_copy = await copy_cost(connection, "events_raw", rows, batch)
        bare_copy = await copy_cost(connection, "events_bare", rows, batch)
        await connection.close()

        pool = await create_pool(cluster.dsn, max_size=2)
        fresh_rate, _, fresh_ok = await verify_rate(pool)
        # a daily verification reads rows that autovacuum has already settled
        await pool.execute("VACUUM (ANALYZE) events")
        await pool.execute("CHECKPOINT")
        settled_rate, _, settled_ok = await verify_rate(pool)
        await pool.close()

        path = Cost(
            parsing.wall + appending.wall,
            parsing.client + appending.client,
            parsing.server + appending.server,
        )
        for name, cost, note in (
            ("parse", parsing, "Envelope.from_json of the Kafka bytes"),
            ("append", appending, "eventstore.append"),
            ("parse + append", path, "the audit-log path"),
            ("raw COPY", raw_copy, "the same rows, events-shaped table"),
            ("bare COPY", bare_copy, "the same rows, no index, no generated column"),
        ):
            print(
                f"{name:15}: {events / cost.wall:>9,.0f} events/s  ({cost.wall:.2f} s; "
                f"{cost.per_event(events)}) {note}"
            )
        print(
            f"verify         : {fresh_rate:>9,.0f} events/s  (ok={fresh_ok}) first read of "
            "freshly written rows"
        )
        print(
            f"verify         : {settled_rate:>9,.0f} events/s  (ok={settled_ok}) after VACUUM, "
            "as a scheduled run finds them"
        )
        for name, cost in (("append", appending), ("parse + append", path)):
            for ceiling_name, ceiling in (("raw COPY", raw_copy), ("bare COPY", bare_copy)):
                wall, cpu = ceiling.wall / cost.wall, ceiling.cpu / cost.cpu
                met = (
                    f"  (target >= 0.50: {'met' if wall >= 0.5 else 'MISSED'})"
                    if (name, ceiling_name) == ("append", "raw COPY")
                    else ""
                )
                print(f"{name + ' / ' + ceiling_name:27}= {wall:.2f} wall, {cpu:.2f} cpu{met}")
        target = "met" if settled_rate >= 200_000 else "MISSED"
        print(f"verify target >= 200,000 events/s: {target}")
        if targets:
            await grow(cluster, targets, batch, grow_batches, subjects)
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--subjects", type=int, default=2000, help="subjects (streams)")
    parser.add_argument(
        "--grow", default="", help="store sizes to grow to and measure at, e.g. 1000000,5000000"
    )
    parser.add_argument(
        "--grow-batches", type=int, default=20, help="batches appended at each size"
    )
    parser.add_argument(
        "--shared-buffers",
        default="128MB",
        help="PostgreSQL's shared_buffers (its default is 128MB; size it to the indexes' "
        "working set when measuring growth)",
    )
    args = parser.parse_args()
    targets = [int(size) for size in args.grow.split(",") if size.strip()]
    asyncio.run(
        bench(
            args.events,
            args.batch,
            targets,
            args.grow_batches,
            args.subjects,
            args.shared_buffers,
        )
    )


if __name__ == "__main__":
    main()
