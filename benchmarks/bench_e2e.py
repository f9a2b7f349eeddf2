"""End-to-end benchmark: ingest, rules and notifier together, fed a trial-shaped mix.

Prints figures; asserts nothing (the machine is shared and noisy: compare the ratios
measured in one run). On a private PostgreSQL cluster (fsync on, commit timestamps on), a
Tansu broker and a real SMTP server (aiosmtpd, a process of its own), with the three
services as processes (``python -m vigil ingest|rules|notifier``, as in production):

1. ceilings, before the services start, on the same broker and database: ``ingest`` keeps
   raw bodies with COPY and produces the events (acks=all), one transaction and one
   awaited produce per 500; ``rules`` consumes them and COPYs each batch, offsets after the
   commit (as bench_rules); ``serial`` is both, one after the other: the raw cost of taking
   a result in and storing it once more;
2. throughput: subjects are enrolled, then ``--results`` results are sent as fast as ingest
   takes them over MLLP (ORU^R01, one OBX per analyte), FHIR (transaction Bundles) and
   HTTP JSON (single results and batches) in the ``--mix``, with some low haemoglobins
   (signals, e-mails) and some corrections; the rate runs from the first receipt kept to
   the last result stored in the audit log;
3. paced: the same mix at each ``--rates`` (results/s) for ``--seconds``: latency from a
   result's arrival at ingest to its signal's commit, and from that commit to each e-mail
   accepted by the SMTP server.

Every stage's time comes from where it happened: arrival (``received_messages.received_at``),
receipt committed and fact stored (PostgreSQL commit timestamps of their rows), signal
committed (the signal event's commit timestamp), e-mail accepted (the SMTP server's clock
when it answers DATA); ACK is the sender's clock.

    make bench
    python benchmarks/bench_e2e.py --results 20000 --rates 500,2000 --seconds 20
    python benchmarks/bench_e2e.py --results 5000 --rates 500 --seconds 10   # quick look
    python benchmarks/bench_e2e.py --mix mllp=1 --obx 5 --connections 8     # MLLP only
    python benchmarks/bench_e2e.py --profile /tmp/prof   # py-spy of each service (raw)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import (
    consume_and_store,
    copy_raw,
    percentile,
    remove_folder,
    start_profiler,
    stop_processes,
)
from e2e_traffic import Mix, Senders, Trial, Unit, build_units, flood, paced

from services.ingest.adapters.key_store import KeyScope, create_key
from services.settings import VigilSettings
from shared.db.migrate import upgrade
from shared.events import CONTENT_TYPE, LabResultReported, wrap
from shared.kafka import ensure_topics
from shared.kafka_security import kafka_client_options
from vigil.devstack.ports import free_port
from vigil.devstack.postgres import PrivateCluster
from vigil.devstack.supervisor import ManagedProcess, http_ready
from vigil.devstack.tansu import TansuBroker

REPO = Path(__file__).resolve().parents[1]
STUDY = "NCT05262686"
SIGNAL_RAISED = "org.vigil.safety_signal.raised.v1"
ENROLLED = "org.vigil.subject.enrolled.v1"
CEILING_TOPIC = "bench.e2e.ceiling"
SERVICES = (("safety_rules", "rules"), ("notifier", "notifier"), ("ingest", "ingest"))


def spread(values: list[float]) -> str:
    """p50 / p95 / p99 in milliseconds, and how many."""
    if not values:
        return "    -       -       -   (none)"
    ms = [v * 1000 for v in values]
    return (
        f"{percentile(ms, 0.5):7.0f} {percentile(ms, 0.95):7.0f} {percentile(ms, 0.99):7.0f}"
        f"   (n={len(ms):,})"
    )


# --- ceilings ---------------------------------------------------------------------------


def local(bootstrap: str) -> VigilSettings:
    return VigilSettings(kafka_bootstrap=bootstrap, environment="development")


async def ingest_ceiling(bootstrap: str, dsn: str, count: int, chunk: int = 500) -> float:
    """Results/s of keeping raw bodies (COPY, one transaction per chunk) and producing the
    events (acks=all, awaited per chunk): ingest's durable work with nothing else."""
    began = datetime(2026, 3, 2, 8, tzinfo=UTC)
    envelopes = [
        wrap(
            LabResultReported(
                study_id=STUDY,
                subject_id=f"C{n % 400:05d}",
                loinc_code="718-7",
                value=Decimal("13.1"),
                unit="g/dL",
                reference_low=Decimal(12),
                reference_high=Decimal(16),
                collected_at=began + timedelta(hours=n),
                source_message_id=f"CEIL-{n}",
            ),
            source="/bench/ceiling",
        )
        for n in range(count)
    ]
    values = [e.to_json() for e in envelopes]
    connection = await asyncpg.connect(dsn)
    await connection.execute(
        "CREATE TABLE bench_receipts (id uuid, at timestamptz DEFAULT clock_timestamp(), "
        "raw bytea); CREATE TABLE bench_raw (topic text, part int, off bigint, v bytea)"
    )
    producer = AIOKafkaProducer(**kafka_client_options(local(bootstrap)), acks="all", linger_ms=2)
    await producer.start()
    try:
        start = time.perf_counter()
        for first in range(0, count, chunk):
            part = list(
                zip(envelopes[first : first + chunk], values[first : first + chunk], strict=True)
            )
            async with connection.transaction():
                await connection.copy_records_to_table(
                    "bench_receipts", records=[(e.id, v) for e, v in part], columns=["id", "raw"]
                )
            futures = [
                await producer.send(
                    CEILING_TOPIC,
                    v,
                    key=(e.subject or "").encode(),
                    headers=[("content-type", CONTENT_TYPE.encode())],
                )
                for e, v in part
            ]
            await asyncio.gather(*futures)
        return count / (time.perf_counter() - start)
    finally:
        await producer.stop()
        await connection.close()


async def rules_ceiling(bootstrap: str, dsn: str, count: int, batch: int = 500) -> float:
    """Events/s of a bare consumer that COPYs each batch, offsets committed after it."""
    return await consume_and_store(
        [CEILING_TOPIC],
        local(bootstrap),
        dsn,
        group="bench-e2e-ceiling",
        expected=count,
        batch=batch,
        store=copy_raw,
    )


@dataclass(frozen=True)
class Ceilings:
    ingest: float
    rules: float

    @property
    def serial(self) -> float:
        return 1 / (1 / self.ingest + 1 / self.rules)


async def measure_ceilings(bootstrap: str, dsn: str, count: int, partitions: int) -> Ceilings:
    admin = AIOKafkaAdminClient(**kafka_client_options(local(bootstrap)))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(CEILING_TOPIC, partitions, 1)])
    finally:
        await admin.close()
    server = await asyncpg.connect(dsn)
    await server.execute("CREATE DATABASE bench_ceiling")
    await server.close()
    ceiling_dsn = dsn.rsplit("/", 1)[0] + "/bench_ceiling"
    kept = await ingest_ceiling(bootstrap, ceiling_dsn, count)
    copied = await rules_ceiling(bootstrap, ceiling_dsn, count)
    return Ceilings(kept, copied)


# --- the stack --------------------------------------------------------------------------


@dataclass
class Stack:
    folder: Path
    cluster: PrivateCluster
    broker: TansuBroker
    mail_log: Path
    ingest_url: str
    mllp_port: int
    processes: list[ManagedProcess]
    helpers: list[subprocess.Popen[bytes]]


def service_env(
    stack_folder: Path,
    cluster: PrivateCluster,
    broker: TansuBroker,
    smtp_port: int,
    ports: dict[str, int],
    mllp_port: int,
    partitions: int,
) -> dict[str, str]:
    unlimited = "1000000"
    return {
        "PYTHONPATH": str(REPO),
        "VIGIL_DATABASE_URL": cluster.dsn,
        "VIGIL_KAFKA_BOOTSTRAP": broker.bootstrap,
        "VIGIL_KAFKA_PARTITIONS": str(partitions),
        "VIGIL_STUDY_DIR": str(REPO / "studies"),
        "VIGIL_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "VIGIL_RULES_PORT": str(ports["rules"]),
        "VIGIL_NOTIFIER_PORT": str(ports["notifier"]),
        "VIGIL_INGEST_PORT": str(ports["ingest"]),
        "VIGIL_MLLP_PORT": str(mllp_port),
        "VIGIL_NOTIFIER_PUBLIC_URL": f"http://127.0.0.1:{ports['notifier']}",
        "VIGIL_INGEST_PUBLIC_URL": f"http://127.0.0.1:{ports['ingest']}",
        "VIGIL_AUDIT_ANCHOR_FILE": str(stack_folder / "anchors.jsonl"),
        "VIGIL_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        # one machine: /metrics open, the superuser's DSN, loopback MLLP senders accepted
        "VIGIL_ENVIRONMENT": "development",
        # the benchmark is one source sending a trial's worth: no per-source throttling
        "VIGIL_INGEST_RATE_PER_SOURCE": unlimited,
        "VIGIL_INGEST_RATE_BURST_PER_SOURCE": unlimited,
        "VIGIL_MLLP_RATE_PER_SECOND": unlimited,
        "VIGIL_MLLP_RATE_BURST": unlimited,
        "VIGIL_MLLP_MAX_CONNECTIONS_PER_PEER": "64",
    }


def start_helper(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)


def start_services(
    stack: Stack, env: dict[str, str], ports: dict[str, int], profile: Path | None
) -> None:
    for name, command in SERVICES:
        process = ManagedProcess(
            name,
            [sys.executable, "-m", "vigil", command],
            env=env,
            log_file=stack.folder / f"{name}.log",
            ready=http_ready(f"http://127.0.0.1:{ports[command]}/readyz"),
            ready_timeout=120,
        )
        process.start()
        stack.processes.append(process)
        if profile is not None and process.process is not None:
            profile.mkdir(parents=True, exist_ok=True)
            stack.helpers.append(
                start_profiler(
                    process.process.pid,
                    profile / f"{name}.txt",
                    log=stack.folder / f"py-spy-{name}.log",
                )
            )


def stop_stack(stack: Stack) -> None:
    stop_processes(stack.helpers)  # py-spy first: it writes its profile on SIGINT
    for process in reversed(stack.processes):
        process.stop()
    stack.broker.stop()
    stack.cluster.stop()


# --- measuring a phase ------------------------------------------------------------------


async def db_now(pool: asyncpg.Pool) -> datetime:
    now: datetime = await pool.fetchval("SELECT clock_timestamp()")
    return now


PHASE = """
WITH r AS (
    SELECT raw_sha256, extract(epoch FROM received_at) AS arrived,
           extract(epoch FROM pg_xact_commit_timestamp(xmin)) AS kept,
           unnest(event_ids) AS event_id
    FROM received_messages WHERE received_at >= $1 AND outcome = 'accepted')
SELECT r.event_id, r.raw_sha256, r.arrived, r.kept, e.type,
       extract(epoch FROM pg_xact_commit_timestamp(e.xmin)) AS stored
FROM r LEFT JOIN events e USING (event_id)
"""


@dataclass(frozen=True)
class Fact:
    """One result's way through the stack (unix times): sent by the feeder, arrived at
    ingest (its receipt's received_at), receipt committed, fact stored by rules."""

    event_id: uuid.UUID
    sent: float
    arrived: float
    kept: float
    stored: float


async def wait_stored(pool: asyncpg.Pool, since: datetime, timeout: float) -> list[asyncpg.Record]:
    """The phase's events, once every one ingest accepted is in the audit log."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await pool.fetch(PHASE, since)
        missing = sum(1 for row in rows if row["stored"] is None)
        if not missing:
            return rows
        if time.monotonic() > deadline:
            print(
                f"  !! {missing:,} of {len(rows):,} accepted events not stored in {timeout:.0f} s"
            )
            return [row for row in rows if row["stored"] is not None]
        await asyncio.sleep(0.5)


async def signals_of(
    pool: asyncpg.Pool, facts: dict[uuid.UUID, Fact]
) -> dict[str, tuple[Fact, float]]:
    """signal id -> (the result that raised it, the signal's commit)."""
    rows = await pool.fetch(
        "SELECT (envelope->>'causationid')::uuid AS cause, payload->>'signal_id' AS signal, "
        "extract(epoch FROM pg_xact_commit_timestamp(xmin)) AS committed FROM events "
        "WHERE type = $1 AND (envelope->>'causationid')::uuid = ANY($2::uuid[])",
        SIGNAL_RAISED,
        list(facts),
    )
    return {r["signal"]: (facts[r["cause"]], float(r["committed"])) for r in rows}


def mails(log: Path) -> dict[str, float]:
    """Message-ID -> when the SMTP server accepted it."""
    found: dict[str, float] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            stamp, _, message_id = line.split(" ", 2)
            found.setdefault(message_id.strip("<>"), float(stamp))
    return found


async def wait_mailed(
    pool: asyncpg.Pool, log: Path, signals: list[str], timeout: float
) -> dict[str, list[float]]:
    """When the alert e-mails of each signal were accepted (its ``raised`` deliveries,
    not the later notices of its resolution), once all were or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while True:
        planned: dict[str, list[str]] = defaultdict(list)
        for r in await pool.fetch(
            "SELECT signal_id::text AS signal, message_id FROM deliveries WHERE channel = "
            "'email' AND purpose = 'raised' AND signal_id = ANY($1::uuid[])",
            signals,
        ):
            planned[r["signal"]].append(r["message_id"].strip("<>"))
        accepted = mails(log)
        received = {s: [accepted[m] for m in planned.get(s, []) if m in accepted] for s in signals}
        short = [s for s in signals if not planned.get(s) or len(received[s]) < len(planned[s])]
        if not short or time.monotonic() > deadline:
            if short:
                print(
                    f"  !! {len(short)} of {len(signals)} signals not all mailed in {timeout:.0f} s"
                )
            return received
        await asyncio.sleep(0.5)


NOTIFIER = """
WITH attempted AS (
    SELECT payload->>'signal_id' AS signal, min(pg_xact_commit_timestamp(xmin)) AS at
    FROM events WHERE type = 'org.vigil.notification.delivery_attempted.v1' GROUP BY 1),
failed AS (
    SELECT payload->>'signal_id' AS signal, count(*) AS n, min(payload->>'error') AS error
    FROM events WHERE type = 'org.vigil.notification.delivery_failed.v1' GROUP BY 1),
planned AS (
    SELECT signal_id::text AS signal, min(created_at) AS at FROM deliveries
    WHERE purpose = 'raised' GROUP BY 1)
SELECT e.payload->>'signal_id' AS signal, extract(epoch FROM o.published_at) AS published,
       extract(epoch FROM p.at) AS planned, extract(epoch FROM a.at) AS attempted,
       coalesce(f.n, 0) AS failed, f.error
FROM events e JOIN outbox o USING (event_id)
LEFT JOIN planned p ON p.signal = e.payload->>'signal_id'
LEFT JOIN attempted a ON a.signal = e.payload->>'signal_id'
LEFT JOIN failed f ON f.signal = e.payload->>'signal_id'
WHERE e.type = $1 AND e.payload->>'signal_id' = ANY($2::text[])
"""


async def notifier_stages(
    pool: asyncpg.Pool, signals: dict[str, tuple[Fact, float]], received: dict[str, list[float]]
) -> None:
    """Where a signal's time goes between its commit and its e-mails: the outbox relay
    publishes it, the notifier plans its deliveries, the delivery worker records a first
    attempt (the worker's claim), and the SMTP server accepts each message."""
    rows = [
        {**r, **{k: float(r[k]) for k in ("published", "planned", "attempted")}}
        for r in await pool.fetch(NOTIFIER, SIGNAL_RAISED, list(signals))
        if None not in (r["published"], r["planned"], r["attempted"])
    ]
    committed = {s: c for s, (_, c) in signals.items()}
    stage("signal committed -> published", [r["published"] - committed[r["signal"]] for r in rows])
    stage("published -> deliveries planned", [r["planned"] - r["published"] for r in rows])
    stage("planned -> first attempt recorded", [r["attempted"] - r["planned"] for r in rows])
    stage(
        "first attempt -> e-mail accepted",
        [t - r["attempted"] for r in rows for t in received.get(r["signal"], [])],
    )
    failures = [r for r in rows if r["failed"]]
    if failures:
        print(
            f"  !! {sum(r['failed'] for r in failures)} failed delivery attempts for "
            f"{len(failures)} signals, e.g. {failures[0]['error']!r:.200}"
        )


def stage(name: str, values: list[float]) -> None:
    print(f"  {name:<34}{spread(values)}")


async def report_phase(
    pool: asyncpg.Pool,
    stack: Stack,
    since: datetime,
    units: list[Unit],
    *,
    ceilings: Ceilings | None,
    paced_rate: int | None,
    timeout: float,
) -> None:
    failed = [u for u in units if not u.ok]
    sent_at = {u.digest: u.sent for u in units}
    rows = await wait_stored(pool, since, timeout)
    facts = {
        r["event_id"]: Fact(
            r["event_id"],
            sent_at.get(bytes(r["raw_sha256"]), float(r["arrived"])),
            float(r["arrived"]),
            float(r["kept"]),
            float(r["stored"]),
        )
        for r in rows
        if (r["type"] or "").startswith("org.vigil.lab_result.")
    }
    signals = await signals_of(pool, facts)
    received = await wait_mailed(pool, stack.mail_log, list(signals), timeout=60)
    refused = sorted({u.answer for u in failed})[:5] if failed else ""
    print(
        f"  sent {sum(u.results for u in units):,} results in {len(units):,} units; "
        f"{len(failed)} units refused {refused}"
    )
    results = list(facts.values())
    if results:
        first = min(f.arrived for f in results)
        last = max(f.stored for f in results)
        rate = len(results) / (last - first) if last > first else float("nan")
        emails = sum(len(received.get(s, [])) for s in signals)
        print(
            f"  sustained: {rate:>8,.0f} results/s end to end ({len(results):,} results stored, "
            f"{len(signals):,} signals, {emails:,} e-mails)"
        )
        if ceilings is not None:
            print(
                f"  / ceilings: serial {rate / ceilings.serial:.2f}, ingest "
                f"{rate / ceilings.ingest:.2f}, rules {rate / ceilings.rules:.2f}; target "
                f">= 5,000 results/s: {'met' if rate >= 5000 else 'MISSED'}"
            )
    by_channel: dict[str, list[float]] = defaultdict(list)
    for unit in units:
        if unit.ok:
            by_channel[unit.channel].append(unit.answered - unit.sent)
    print("  stage (ms)                              p50     p95     p99")
    for channel, waits in sorted(by_channel.items()):
        stage(f"sent -> ACK, {channel} (sender's clock)", waits)
    stage("sent -> arrival (received_at)", [f.arrived - f.sent for f in results])
    stage("arrival -> receipt committed", [f.kept - f.arrived for f in results])
    stage("receipt committed -> fact stored", [f.stored - f.kept for f in results])
    stage("sent -> fact stored", [f.stored - f.sent for f in results])
    from_arrival = [committed - fact.arrived for fact, committed in signals.values()]
    from_sent = [committed - fact.sent for fact, committed in signals.values()]
    stage("fact stored -> signal committed", [c - f.stored for f, c in signals.values()])
    stage("arrival -> signal committed", from_arrival)
    stage("sent -> signal committed", from_sent)
    await notifier_stages(pool, signals, received)
    to_mail = [t - c for s, (_, c) in signals.items() for t in received.get(s, [])]
    stage("signal committed -> e-mail accepted", to_mail)
    if paced_rate is not None:
        targets(paced_rate, from_arrival, from_sent, to_mail)


def targets(
    rate: int, from_arrival: list[float], from_sent: list[float], to_mail: list[float]
) -> None:
    budget = 0.100 if rate <= 500 else 0.250
    if not from_arrival or not to_mail:
        # nothing to judge by: no signal (or no e-mail) in the phase, so neither met nor missed
        print(f"  targets at {rate}/s: no signal and e-mail in this phase to judge them by")
        return
    p99, sent_p99, mail_p99 = (percentile(v, 0.99) for v in (from_arrival, from_sent, to_mail))
    print(
        f"  targets at {rate}/s: arrival -> signal p99 {p99 * 1000:.0f} ms (sent: "
        f"{sent_p99 * 1000:.0f}) < {budget * 1000:.0f}: {'met' if p99 < budget else 'MISSED'}; "
        f"signal -> e-mail p99 {mail_p99 * 1000:.0f} ms < 1000: "
        f"{'met' if mail_p99 < 1 else 'MISSED'}"
    )


# --- the run ----------------------------------------------------------------------------


async def enrol(pool: asyncpg.Pool, senders: Senders, trial: Trial) -> None:
    for body in trial.enrolments():
        answer = await senders.post("/v1/subjects", body)
        if answer.status_code != 202:
            raise RuntimeError(f"enrolment refused: {answer.status_code} {answer.text[:300]}")
    deadline = time.monotonic() + 120
    while (
        await pool.fetchval("SELECT count(*) FROM events WHERE type = $1", ENROLLED)
        < trial.subjects
    ):
        if time.monotonic() > deadline:
            raise TimeoutError("the enrolments did not reach the audit log within 120 s")
        await asyncio.sleep(0.5)


async def run(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="vigil-bench-e2e-", dir="/tmp"))
    os.chmod(folder, 0o755)  # noqa: S103 - the postgres account must reach the cluster folder
    cluster = PrivateCluster(
        folder / "data",
        free_port(),
        fsync=True,
        log_file=folder / "pg.log",
        settings=("track_commit_timestamp=on",),
    )
    broker = TansuBroker(free_port(), log_file=folder / "tansu.log")
    smtp_port, mllp_port = free_port(), free_port()
    ports = {"rules": free_port(), "notifier": free_port(), "ingest": free_port()}
    stack = Stack(
        folder,
        cluster,
        broker,
        folder / "mail.log",
        f"http://127.0.0.1:{ports['ingest']}",
        mllp_port,
        [],
        [],
    )
    mix = Mix.parse(
        args.mix,
        batch=args.batch,
        bundle=args.bundle,
        obx=args.obx,
        abnormal=args.abnormal,
        corrections=args.corrections,
    )
    try:
        cluster.start()
        broker.start()
        stack.helpers.append(
            start_helper(
                [
                    sys.executable,
                    str(Path(__file__).parent / "e2e_smtp_sink.py"),
                    "--port",
                    str(smtp_port),
                    "--out",
                    str(stack.mail_log),
                ],
                folder / "smtp.log",
            )
        )
        await upgrade(cluster.dsn)
        await ensure_topics(
            VigilSettings(kafka_bootstrap=broker.bootstrap, kafka_partitions=args.partitions)
        )
        ceilings = await measure_ceilings(
            broker.bootstrap, cluster.dsn, max(args.results, 10_000), args.partitions
        )
        print(
            f"ceilings : ingest {ceilings.ingest:>8,.0f}/s (COPY receipts + produce, acks=all), "
            f"rules {ceilings.rules:>8,.0f}/s (consume + COPY), serial {ceilings.serial:>8,.0f}/s",
            flush=True,
        )
        admin = await asyncpg.connect(cluster.dsn)
        try:
            new, _ = await create_key(
                admin, KeyScope("bench", (STUDY,), None, False), issued_by="bench"
            )
        finally:
            await admin.close()
        env = service_env(folder, cluster, broker, smtp_port, ports, mllp_port, args.partitions)
        start_services(stack, env, ports, Path(args.profile) if args.profile else None)
        pool = await asyncpg.create_pool(cluster.dsn, min_size=1, max_size=3)
        senders = Senders(stack.ingest_url, mllp_port, new.text, args.connections)
        trial = Trial(args.subjects)
        try:
            await enrol(pool, senders, trial)
            print(f"enrolled {trial.subjects:,} subjects; mix {args.mix}", flush=True)
            if args.results:
                units = build_units(trial, mix, args.results, seed=1)
                since = await db_now(pool)
                print(
                    f"--- throughput: {args.results:,} results as fast as ingest takes them",
                    flush=True,
                )
                await flood(senders, units, args.connections)
                await report_phase(
                    pool,
                    stack,
                    since,
                    units,
                    ceilings=ceilings,
                    paced_rate=None,
                    timeout=max(120.0, args.results / 200),
                )
            for number, rate in enumerate(int(r) for r in args.rates.split(",") if r):
                units = build_units(
                    trial, mix, rate * args.seconds, seed=2 + number, paced_rate=rate
                )
                await asyncio.sleep(2)  # the previous phase's tail
                since = await db_now(pool)
                print(f"--- paced {rate} results/s for {args.seconds} s", flush=True)
                await paced(senders, units, rate)
                await report_phase(
                    pool, stack, since, units, ceilings=None, paced_rate=rate, timeout=120.0
                )
        finally:
            await senders.close()
            await pool.close()
    finally:
        stop_stack(stack)
        remove_folder(folder)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--results", type=int, default=20_000, help="results in the throughput phase (0: none)"
    )
    parser.add_argument("--subjects", type=int, default=400)
    parser.add_argument(
        "--rates", default="500,2000", help="paced phases, results/s, comma separated"
    )
    parser.add_argument("--seconds", type=int, default=20, help="length of each paced phase")
    parser.add_argument(
        "--mix",
        default="json=5,batch=45,fhir=25,mllp=25",
        help="weights of the results per channel: json (single), batch, fhir, mllp",
    )
    parser.add_argument("--batch", type=int, default=500, help="results per JSON batch")
    parser.add_argument("--bundle", type=int, default=50, help="Observations per FHIR Bundle")
    parser.add_argument("--obx", type=int, default=5, help="analytes per visit (OBX per ORU)")
    parser.add_argument(
        "--abnormal", type=float, default=0.02, help="share of visits with a low haemoglobin"
    )
    parser.add_argument(
        "--corrections", type=float, default=0.01, help="share of JSON visits corrected later"
    )
    parser.add_argument(
        "--connections", type=int, default=8, help="MLLP connections and HTTP requests in flight"
    )
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--profile", help="folder for py-spy profiles (raw) of each service")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
