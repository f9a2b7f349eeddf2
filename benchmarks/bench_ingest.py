"""Ingest benchmark: the real ingest service against a raw ceiling measured in the same run.

Prints figures; it asserts nothing (machines are shared and noisy: compare the ratio measured
in one run). On a private PostgreSQL cluster (fsync on) and a Tansu broker, ingest runs as
its own process (``python -m vigil ingest``, development settings: loopback MLLP senders
are the development source, TLS off) and is fed, for ``--seconds`` each:

- ``mllp1`` / ``mllp8``: ORU^R01 with 5 OBX on 1 and on 8 connections, each connection
  sending its next message only once the previous one is ACKed (an interface engine's
  discipline);
- ``json``: HTTP JSON single lab results (``--http-concurrency`` requests in flight);
- ``batch``: HTTP JSON lists of 500 lab results;
- ``fhir``: FHIR transaction Bundles of 50 Observations.

For each: accepted messages/s and results/s, p50/p99 time to ACK (or response). Beside it,
the ceiling of the same run: the same receipt rows (message verbatim, its owed events)
INSERTed straight into tables shaped like ingest's (one transaction per message over as
many connections as the load uses, and grouped, 100 messages per transaction), and the
same events produced to the broker by a bare aiokafka producer (acks=all); the ceiling of
a message is storing it and producing its events, one after the other.

    make bench-ingest
    python benchmarks/bench_ingest.py --seconds 10 --parts mllp1,mllp8,batch
    python benchmarks/bench_ingest.py --profile /tmp/ingest.txt   # py-spy, raw format
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer
from bench_common import remove_folder, start_profiler, stop_processes

from services.ingest.adapters.key_store import KeyScope, create_key
from services.settings import VigilSettings
from shared.db.migrate import upgrade
from shared.events import CONTENT_TYPE, LabResultReported, wrap
from shared.events.topics import LAB_RESULTS
from shared.kafka import ensure_topics
from shared.kafka_security import kafka_client_options
from vigil.devstack.ports import free_port
from vigil.devstack.postgres import PrivateCluster
from vigil.devstack.tansu import TansuBroker

REPO = Path(__file__).resolve().parents[1]
STUDY = "NCT05262686"
PARTS = ("mllp1", "mllp8", "json", "batch", "fhir")
START_BLOCK, END_BLOCK = b"\x0b", b"\x1c\x0d"
# loinc, name, unit, range, value
PANEL = (
    ("718-7", "Hemoglobin", "g/dL", "12.0-16.0", "13.5"),
    ("751-8", "Neutrophils", "10*9/L", "1.8-7.7", "3.9"),
    ("1742-6", "ALT", "U/L", "7-40", "22"),
    ("1920-8", "AST", "U/L", "10-35", "25"),
    ("2160-0", "Creatinine", "mg/dL", "0.6-1.1", "0.8"),
)
T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
_counter = itertools.count()


def unique() -> int:
    return next(_counter)


# ---------------------------------------------------------------------------- the payloads


def oru(subject: str) -> bytes:
    """An ORU^R01 with one order and 5 OBX, with a control id never sent before."""
    n = unique()
    at = (T0 + timedelta(minutes=n)).strftime("%Y%m%d%H%M%S")
    segments = [
        f"MSH|^~\\&|LIS|PKUPH-LAB|VIGIL|SPONSOR|{at}||ORU^R01^ORU_R01|B{n:09d}|P|2.5.1",
        f"PID|1||{subject}^^^NCT05262686^SS||~||19850412|F",
        "PV1|1|O|PKUPH-01",
        f"ORC|RE|P-{n}|F-{n}",
        f"OBR|1|P-{n}|F-{n}|24323-8^CMP^LN|||{at}+0000",
    ]
    segments += [
        f"OBX|{i + 1}|NM|{code}^{name}^LN||{value}|{unit}|{rng}|N|||F"
        for i, (code, name, unit, rng, value) in enumerate(PANEL)
    ]
    return "\r".join(segments).encode()


def lab_result(subject: str) -> dict[str, object]:
    n = unique()
    code, _, unit, rng, value = PANEL[n % len(PANEL)]
    low, high = rng.split("-")
    return {
        "study_id": STUDY,
        "subject_id": subject,
        "loinc_code": code,
        "value": value,
        "unit": unit,
        "reference_low": low,
        "reference_high": high,
        "collected_at": (T0 + timedelta(minutes=n)).isoformat(),
        "source_message_id": f"BENCH-{n}",
    }


def fhir_bundle(subject: str, entries: int) -> dict[str, object]:
    resources = []
    for _ in range(entries):
        n = unique()
        code, _, unit, rng, value = PANEL[n % len(PANEL)]
        low, high = rng.split("-")
        resources.append(
            {
                "resource": {
                    "resourceType": "Observation",
                    "id": f"b-{n}",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                    "subject": {"reference": f"Patient/{subject}"},
                    "effectiveDateTime": (T0 + timedelta(minutes=n)).isoformat(),
                    "valueQuantity": {
                        "value": float(value),
                        "unit": unit,
                        "system": "http://unitsofmeasure.org",
                        "code": unit,
                    },
                    "referenceRange": [
                        {"low": {"value": float(low)}, "high": {"value": float(high)}}
                    ],
                },
                "request": {"method": "POST", "url": "Observation"},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": resources}


# ----------------------------------------------------------------------------- the figures


@dataclass
class Figures:
    """What one load achieved: accepted messages and results, latency per message."""

    messages: int = 0
    results: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float | None = None
    """CPU time ingest's process used meanwhile (user and system)."""
    db_cpu_seconds: float | None = None
    """CPU time the cluster's processes (backends, WAL writer, ...) used meanwhile."""

    def line(self, name: str, ceiling: float | None) -> str:
        if not self.latencies:
            return f"{name:<28} nothing accepted ({self.failed} failed)"
        rate, results = self.messages / self.seconds, self.results / self.seconds
        ordered = sorted(self.latencies)
        p50 = statistics.median(ordered)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        text = (
            f"{name:<28} {rate:>8,.0f} msg/s {results:>9,.0f} results/s  "
            f"p50 {p50:6.1f} ms  p99 {p99:6.1f} ms"
        )
        if self.cpu_seconds is not None and self.messages:
            text += f"  cpu {self.cpu_seconds / self.messages * 1000:6.2f} ms/msg"
        if self.db_cpu_seconds is not None and self.messages:
            text += f" (db {self.db_cpu_seconds / self.messages * 1000:5.2f})"
        if self.failed:
            text += f"  ({self.failed} not accepted)"
        if ceiling:
            text += f"  | ceiling {ceiling:>8,.0f} msg/s, ratio {rate / ceiling:.2f}"
        return text


async def run_load(
    workers: int, seconds: float, one: Callable[[int], Awaitable[tuple[bool, int]]]
) -> Figures:
    """``workers`` loops calling ``one(worker)`` (it returns accepted?, results) until
    ``seconds`` have passed; each call timed."""
    figures = Figures()
    deadline = time.perf_counter() + seconds

    async def worker(number: int) -> None:
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            ok, results = await one(number)
            if ok:
                figures.latencies.append((time.perf_counter() - began) * 1000)
                figures.messages += 1
                figures.results += results
            else:
                figures.failed += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(workers)))
    figures.seconds = time.perf_counter() - began
    return figures


# --------------------------------------------------------------------------- the ceilings


async def db_ceiling(
    dsn: str, raw: bytes, events: int, connections: int, seconds: float, group: int
) -> float:
    """Messages/s of INSERTing a receipt row and its ``events`` outbox rows, ``group``
    messages per transaction, over ``connections`` connections."""
    value = wrap(lab_result_event("S-0"), source="/bench").to_json()
    pool = await asyncpg.create_pool(dsn, min_size=connections, max_size=connections)
    receipt_sql = """INSERT INTO bench_receipts (receipt_id, channel, source, content_type, raw,
                         raw_sha256, outcome, reason, event_ids)
                     VALUES ($1, 'mllp', 'bench', 'x', $2, $3, 'accepted', NULL, $4)"""
    outbox_sql = """INSERT INTO bench_outbox (event_id, receipt_id, topic, key, value, headers,
                        next_check_at)
                    SELECT e, r, t, k, v, '{}'::jsonb, clock_timestamp()
                    FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bytea[], $5::bytea[])
                        AS u(e, r, t, k, v)"""
    try:

        async def one(_: int) -> tuple[bool, int]:
            async with pool.acquire() as connection, connection.transaction():
                receipts, outbox = [], []
                for _ in range(group):
                    receipt_id = uuid.uuid4()
                    ids = [uuid.uuid4() for _ in range(events)]
                    receipts.append((receipt_id, raw, hashlib.sha256(raw).digest(), ids))
                    outbox += [(i, receipt_id, LAB_RESULTS, b"k", value) for i in ids]
                await connection.executemany(receipt_sql, receipts)
                await connection.execute(
                    outbox_sql, *(list(column) for column in zip(*outbox, strict=True))
                )
            return True, 0

        figures = await run_load(connections, seconds, one)
    finally:
        await pool.close()
    return figures.messages * group / figures.seconds


def lab_result_event(subject: str) -> LabResultReported:
    return LabResultReported(
        study_id=STUDY,
        subject_id=subject,
        loinc_code="718-7",
        value=Decimal("13.5"),
        unit="g/dL",
        reference_low=Decimal(12),
        reference_high=Decimal(16),
        collected_at=T0,
        source_message_id=f"BENCH-{unique()}",
    )


async def produce_ceiling(bootstrap: str, seconds: float) -> float:
    """Events/s a bare aiokafka producer (acks=all) gets acknowledged, keyed as ingest
    keys them."""
    settings = VigilSettings(kafka_bootstrap=bootstrap, environment="development")
    producer = AIOKafkaProducer(**kafka_client_options(settings), acks="all", linger_ms=5)
    await producer.start()
    values = [wrap(lab_result_event(f"S-{n}"), source="/bench").to_json() for n in range(2000)]
    sent = 0
    began = time.perf_counter()
    try:
        while time.perf_counter() - began < seconds:
            futures = [
                await producer.send(
                    LAB_RESULTS,
                    value,
                    key=f"{STUDY}/S-{n}".encode(),
                    headers=[("content-type", CONTENT_TYPE.encode())],
                )
                for n, value in enumerate(values)
            ]
            await asyncio.gather(*futures)
            sent += len(values)
    finally:
        await producer.stop()
    return sent / (time.perf_counter() - began)


@dataclass(frozen=True)
class Ceiling:
    per_message: float
    grouped: float
    produce: float  # events/s

    def of(self, events: int, *, grouped: bool) -> float:
        """Messages/s: stored (as given), then their events produced."""
        store = self.grouped if grouped else self.per_message
        return 1 / (1 / store + events / self.produce)


# ------------------------------------------------------------------------------ the loads


async def mllp_load(port: int, connections: int, seconds: float) -> Figures:
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(connections)]
    subjects = [f"M{c:02d}-{n:03d}" for c in range(connections) for n in range(50)]

    async def one(number: int) -> tuple[bool, int]:
        reader, writer = streams[number]
        writer.write(START_BLOCK + oru(subjects[(unique() % 50) + 50 * number]) + END_BLOCK)
        await writer.drain()
        ack = await reader.readuntil(END_BLOCK)
        return b"MSA|AA|" in ack, len(PANEL)

    try:
        return await run_load(connections, seconds, one)
    finally:
        for _, writer in streams:
            writer.close()


async def http_load(
    url: str, key: str, concurrency: int, seconds: float, kind: str, size: int
) -> Figures:
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=60, limits=limits
    ) as client:

        async def one(number: int) -> tuple[bool, int]:
            subject = f"H{number:02d}-{unique() % 50:03d}"
            if kind == "fhir":
                body = json.dumps(fhir_bundle(subject, size)).encode()
                response = await client.post(
                    "/fhir/r4", content=body, headers={"content-type": "application/fhir+json"}
                )
                return response.status_code == 200, size
            items = [lab_result(subject) for _ in range(size)]
            response = await client.post("/v1/lab-results", json=items[0] if size == 1 else items)
            return response.status_code == 202, size

        return await run_load(concurrency, seconds, one)


# ------------------------------------------------------------------------------ the stack


async def prepare(dsn: str) -> str:
    """Migrate, make the ceiling's tables, and issue the benchmark's API key."""
    await upgrade(dsn)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "CREATE TABLE bench_receipts (LIKE received_messages INCLUDING DEFAULTS "
            "INCLUDING INDEXES); CREATE TABLE bench_outbox (LIKE ingest_outbox "
            "INCLUDING DEFAULTS INCLUDING INDEXES)"
        )
        scope = KeyScope("bench", (STUDY,), None, True)
        new, _ = await create_key(connection, scope, issued_by="bench-ingest")
    finally:
        await connection.close()
    return new.text


def start_ingest(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "vigil", "ingest"], env=env, stdout=log, stderr=log
        )


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cluster_cpu(data_dir: Path) -> dict[int, float]:
    """CPU time so far of the cluster's postmaster and each of its children, by pid."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    used = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(entry.name) == postmaster or int(fields[1]) == postmaster:
            used[int(entry.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return used


def cluster_cpu_since(data_dir: Path, before: dict[int, float]) -> float:
    """The cluster's CPU time since ``before`` (a process that ended meanwhile is missed)."""
    return sum(now - before.get(pid, 0.0) for pid, now in cluster_cpu(data_dir).items())


def tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:]


async def wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        for _ in range(240):
            if process.poll() is not None:
                raise RuntimeError(f"ingest exited: {tail(log_path)}")
            try:
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
    raise TimeoutError("ingest was not ready within 120 s")


async def bench(args: argparse.Namespace) -> None:
    parts = [p for p in args.parts.split(",") if p]
    folder = Path(tempfile.mkdtemp(prefix="vigil-bench-ingest-", dir="/tmp"))
    os.chmod(folder, 0o755)  # noqa: S103 - the postgres account must reach the cluster folder
    cluster = PrivateCluster(folder / "data", free_port(), fsync=True, log_file=folder / "pg.log")
    broker = TansuBroker(free_port(), log_file=folder / "tansu.log")
    cluster.start()
    broker.start()
    running: list[subprocess.Popen[bytes]] = []
    try:
        key = await prepare(cluster.dsn)
        await ensure_topics(VigilSettings(kafka_bootstrap=broker.bootstrap, kafka_partitions=4))
        port, mllp_port = free_port(), free_port()
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "VIGIL_DATABASE_URL": cluster.dsn,
            "VIGIL_KAFKA_BOOTSTRAP": broker.bootstrap,
            "VIGIL_KAFKA_PARTITIONS": "4",
            "VIGIL_STUDY_DIR": str(REPO / "studies"),
            "VIGIL_INGEST_PORT": str(port),
            "VIGIL_MLLP_PORT": str(mllp_port),
            "VIGIL_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            # a bench on one machine: loopback MLLP is the development source, no TLS
            "VIGIL_ENVIRONMENT": "development",
            # the limits that guard against a runaway sender are not what is measured
            "VIGIL_MLLP_RATE_PER_SECOND": "1000000",
            "VIGIL_MLLP_RATE_BURST": "1000000",
            "VIGIL_MLLP_MAX_CONNECTIONS_PER_PEER": "64",
            "VIGIL_INGEST_RATE_PER_SOURCE": "1000000",
            "VIGIL_INGEST_RATE_BURST_PER_SOURCE": "1000000",
        }
        log_path = folder / "ingest.log"
        ingest = start_ingest(env, log_path)
        running.append(ingest)
        url = f"http://127.0.0.1:{port}"
        await wait_ready(url, ingest, log_path)
        if args.profile:
            spy = start_profiler(ingest.pid, args.profile, form=args.profile_format)
            running.insert(0, spy)

        seconds, ceiling_seconds = args.seconds, args.ceiling_seconds
        print(f"ceiling ({ceiling_seconds:.0f} s each)...", flush=True)
        produce = await produce_ceiling(broker.bootstrap, ceiling_seconds)
        print(f"  produce (aiokafka, acks=all): {produce:>9,.0f} events/s", flush=True)
        ceilings: dict[str, float] = {}
        sample = oru("S-0")
        for part in parts:
            events, concurrency, raw = {
                "mllp1": (5, 1, sample),
                "mllp8": (5, 8, sample),
                "json": (1, args.http_concurrency, json.dumps(lab_result("S")).encode()),
                "batch": (500, args.batch_concurrency, b"x" * 110_000),
                "fhir": (50, args.batch_concurrency, b"x" * 30_000),
            }[part]
            each = await db_ceiling(cluster.dsn, raw, events, concurrency, ceiling_seconds, 1)
            group = max(1, args.group_events // events)
            grouped = await db_ceiling(
                cluster.dsn, raw, events, concurrency, ceiling_seconds, group
            )
            ceiling = Ceiling(each, grouped, produce)
            ceilings[part] = ceiling.of(events, grouped=True)
            print(
                f"  {part:<6} INSERT: {each:>8,.0f} msg/s one transaction each, "
                f"{grouped:>8,.0f} msg/s {group} per transaction ({concurrency} "
                f"connection(s), {events} events each); with produce: "
                f"{ceiling.of(events, grouped=False):>8,.0f} / "
                f"{ceiling.of(events, grouped=True):>8,.0f} msg/s",
                flush=True,
            )
        idle_began = cpu_seconds(ingest.pid)
        await asyncio.sleep(args.idle_seconds)
        idle = (cpu_seconds(ingest.pid) - idle_began) / args.idle_seconds
        print(
            f"ingest ({seconds:.0f} s each; idle, its background tasks use "
            f"{idle * 1000:.0f} ms of CPU per second, taken off the cpu figures)...",
            flush=True,
        )
        for part in parts:
            cpu_before = cpu_seconds(ingest.pid)
            db_before = cluster_cpu(cluster.data_dir)
            if part == "mllp1":
                figures = await mllp_load(mllp_port, 1, seconds)
                name = "MLLP ORU 5 OBX, 1 conn"
            elif part == "mllp8":
                figures = await mllp_load(mllp_port, 8, seconds)
                name = "MLLP ORU 5 OBX, 8 conns"
            elif part == "json":
                figures = await http_load(url, key, args.http_concurrency, seconds, "json", 1)
                name = f"JSON single, {args.http_concurrency} in flight"
            elif part == "batch":
                figures = await http_load(url, key, args.batch_concurrency, seconds, "batch", 500)
                name = f"JSON x500, {args.batch_concurrency} in flight"
            else:
                figures = await http_load(url, key, args.batch_concurrency, seconds, "fhir", 50)
                name = f"FHIR Bundle x50, {args.batch_concurrency} in flight"
            used = cpu_seconds(ingest.pid) - cpu_before
            figures.cpu_seconds = max(0.0, used - idle * figures.seconds)
            figures.db_cpu_seconds = cluster_cpu_since(cluster.data_dir, db_before)
            print(figures.line(name, ceilings[part]), flush=True)
        print(
            "(ceiling: the same receipt and outbox rows INSERTed, grouped (about "
            f"{args.group_events} events per transaction), then the events produced; cpu: "
            "ingest's own CPU time per accepted message, the figure least moved by a "
            "busy machine; db: the cluster's CPU time per accepted message)"
        )
    finally:
        stop_processes(running)  # py-spy first: it writes its profile on SIGINT
        broker.stop()
        cluster.stop()
        remove_folder(folder)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="load time of each part")
    parser.add_argument("--ceiling-seconds", type=float, default=3.0)
    parser.add_argument(
        "--idle-seconds", type=float, default=4.0, help="ingest's idle CPU measured this long"
    )
    parser.add_argument("--parts", default=",".join(PARTS), help=f"any of {','.join(PARTS)}")
    parser.add_argument("--http-concurrency", type=int, default=8)
    parser.add_argument("--batch-concurrency", type=int, default=2)
    parser.add_argument(
        "--group-events",
        type=int,
        default=500,
        help="events per transaction of the grouped ceiling (at least one message)",
    )
    parser.add_argument("--profile", help="record ingest with py-spy to this file")
    parser.add_argument("--profile-format", default="raw", help="py-spy's -f (raw, speedscope)")
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
