"""Rules-service benchmark through the real broker, against a raw ceiling measured in one run.

Prints figures; it asserts nothing (machines are shared and noisy: compare the ratio measured
in one run). On a private PostgreSQL cluster (fsync on) and a Tansu broker:

1. ceiling: the events are consumed in batches by a bare Kafka consumer that copies them
   into a PostgreSQL table, one transaction per batch, offsets committed after it: the
   same broker, batches and database, with no rule work; beside it, for reference, the
   same records parsed and appended to the hash-chained audit log (in a database of its
   own), which is what the service must do before any rule is judged;
2. sustained: the rules service (``python -m vigil rules``, a separate process) consumes the
   same events from the same topics and stores, judges and records them; the rate is taken
   between the first and the last commit of facts (PostgreSQL's commit timestamps), so the
   consumer-group join is left out;
3. latency: new results are published at a steady rate (500 events/s by default), and the
   time from publishing a result to the commit of the signal it raises is measured.

    make bench-rules
    python benchmarks/bench_rules.py --events 60000 --subjects 600 --rate 500 --seconds 20
    python benchmarks/bench_rules.py --instances 2   # only two instances in one group
    python benchmarks/bench_rules.py --instances 1 --prior 10,100,1000 --events 20000

``--prior N`` (growth): before the run each subject is enrolled and given N earlier results
straight through the event store (and the subject-state projection caught up), and the
service first takes one warm-up result per subject (its first sight of each subject reads
and walks the whole history once, raising at once the signals of every abnormal prior
result, which were stored without them). The measured facts are published only once the
outbox relay has published that backlog (a trial never has one), and the steady rate is
taken over the events committed after the last warm-up event, so per-event cost at 10, 100
and 1,000 prior results can be compared; the same-run ceilings are then measured over the
same records, with the service idle. ``--profile`` needs py-spy (on PATH, beside this
Python, or BENCH_PY_SPY); with ``--profile-steady`` (and ``--prior``) it is attached only
once the warm-up is stored and its signals published, so the profile shows the steady
per-event cost, not the first walk of every history.
    python benchmarks/bench_rules.py --instances 1,3 --partitions 12   # scale-out

By default the whole run is done twice, with one rules instance and with two in one
consumer group (a fresh database and broker each time, each with its own ceiling): the
service scales out by instances, and this machine has two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from bench_common import (
    Store,
    consume_and_store,
    copy_raw,
    percentile,
    remove_folder,
    start_profiler,
    stop_processes,
)

from services.settings import VigilSettings
from shared import eventstore
from shared.db.migrate import upgrade
from shared.events import (
    CONTENT_TYPE,
    Envelope,
    EventPayload,
    LabResultReported,
    SubjectEnrolled,
    wrap,
)
from shared.events.topics import LAB_RESULTS, SUBJECTS, topic_for
from shared.kafka import ensure_topics
from shared.kafka_security import kafka_client_options
from vigil.devstack.ports import free_port
from vigil.devstack.postgres import PrivateCluster
from vigil.devstack.tansu import TansuBroker

REPO = Path(__file__).resolve().parents[1]
STUDY = "NCT05262686"
START = datetime(2026, 3, 2, 8, tzinfo=UTC)
# analyte, unit, reference range, normal value, abnormal value
PANEL = (
    ("718-7", "g/dL", ("12", "16"), "13.1", "8.4"),
    ("751-8", "10*9/L", ("1.8", "7.7"), "3.9", "1.1"),
    ("1742-6", "U/L", ("7", "40"), "22", "150"),
    ("1920-8", "U/L", ("10", "35"), "25", "40"),
    ("1975-2", "mg/dL", ("0.2", "1.2"), "0.6", "0.9"),
    ("2160-0", "mg/dL", ("0.6", "1.1"), "0.8", "0.9"),
    ("2465-3", "g/L", ("7", "16"), "10", "9"),
)


def enrolment(subject: str) -> SubjectEnrolled:
    return SubjectEnrolled(
        study_id=STUDY,
        subject_id=subject,
        site_id="PKUPH-01",
        sex="F",
        birth_date=date(1985, 4, 2),
        weight_kg=Decimal(58),
        day0=START.date(),
    )


def result(subject: str, n: int, *, abnormal: bool) -> LabResultReported:
    code, unit, (low, high), normal, low_value = PANEL[n % len(PANEL)]
    return LabResultReported(
        study_id=STUDY,
        subject_id=subject,
        loinc_code=code,
        value=Decimal(low_value if abnormal else normal),
        unit=unit,
        reference_low=Decimal(low),
        reference_high=Decimal(high),
        collected_at=START + timedelta(hours=n),
        source_message_id=f"BENCH-{subject}-{n}",
    )


def names_of(subjects: int) -> list[str]:
    return [f"B{n:05d}" for n in range(subjects)]


def trial(events: int, subjects: int, first: int | None = None) -> list[Envelope]:
    """Enrolments, then results round-robin over subjects; about 1 in 20 abnormal. With
    ``first`` (the subjects' prior results, enrolled already) no enrolments, and each
    subject's results numbered from ``first`` on (collected after the earlier ones)."""
    names = names_of(subjects)
    payloads: list[EventPayload] = [enrolment(name) for name in names] if first is None else []
    n = 0
    while len(payloads) < events:
        subject = names[n % subjects]
        payloads.append(
            result(subject, (first or 0) + n // subjects, abnormal=(n * 7919) % 20 == 0)
        )
        n += 1
    return [wrap(payload, source="/bench/site") for payload in payloads]


def history_of(subject: str, prior: int) -> list[Envelope]:
    """A subject's enrolment and ``prior`` earlier results (the trial's mix)."""
    payloads: list[EventPayload] = [enrolment(subject)]
    payloads += [result(subject, n, abnormal=(n * 7919) % 20 == 0) for n in range(prior)]
    return [wrap(payload, source="/bench/prior") for payload in payloads]


def warm_up(subjects: int, prior: int) -> list[Envelope]:
    """One normal result per subject, collected after its prior ones and before the
    measured ones (which are numbered from ``prior + 1``)."""
    return [
        wrap(result(name, prior, abnormal=False), source="/bench/warm-up")
        for name in names_of(subjects)
    ]


async def load_prior(dsn: str, subjects: int, prior: int) -> float:
    """Each subject's enrolment and ``prior`` results appended straight to the audit log,
    a few subjects per transaction, then the subject-state projection caught up (as a
    service that has been running would find it); returns the seconds it took."""
    from services.safety_rules.adapters.subject_state_projection import SubjectStateProjection
    from shared.projections import ProjectionRunner

    began = time.perf_counter()
    names = names_of(subjects)
    per_transaction = max(1, 5000 // (prior + 1))
    connection = await asyncpg.connect(dsn)
    try:
        for start in range(0, len(names), per_transaction):
            events = [
                eventstore.NewEvent(envelope)
                for name in names[start : start + per_transaction]
                for envelope in history_of(name, prior)
            ]
            async with connection.transaction():
                await eventstore.append(connection, events)
    finally:
        await connection.close()
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        await ProjectionRunner(pool, SubjectStateProjection(), batch_size=5000).catch_up()
    finally:
        await pool.close()
    return time.perf_counter() - began


def local(bootstrap: str) -> VigilSettings:
    """Settings for the benchmark's own broker: its clients connect as the services do."""
    return VigilSettings(kafka_bootstrap=bootstrap, environment="development")


async def publish(bootstrap: str, envelopes: list[Envelope]) -> None:
    producer = AIOKafkaProducer(**kafka_client_options(local(bootstrap)), acks="all", linger_ms=5)
    await producer.start()
    try:
        for start in range(0, len(envelopes), 2000):
            chunk = envelopes[start : start + 2000]
            futures = [
                await producer.send(
                    topic_for(type(e.payload())),
                    e.to_json(),
                    key=(e.subject or "").encode(),
                    headers=[("content-type", CONTENT_TYPE.encode())],
                )
                for e in chunk
            ]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def consume_inputs(
    bootstrap: str, dsn: str, group: str, expected: int, batch: int, store: Store
) -> float:
    """Events/s of a bare consumer over the input topics that stores each batch in one
    transaction and commits its offsets after it (the clock starts at the first batch)."""
    return await consume_and_store(
        [SUBJECTS, LAB_RESULTS],
        local(bootstrap),
        dsn,
        group=group,
        expected=expected,
        batch=batch,
        store=store,
    )


async def ceiling(bootstrap: str, dsn: str, expected: int, batch: int) -> float:
    """Events/s of a bare consume-and-copy loop over the same topics."""
    connection = await asyncpg.connect(dsn)
    await connection.execute("CREATE TABLE bench_raw (topic text, part int, off bigint, v bytea)")
    await connection.close()
    return await consume_inputs(bootstrap, dsn, "bench-ceiling", expected, batch, copy_raw)


async def store_ceiling(bootstrap: str, dsn: str, expected: int, batch: int) -> float:
    """Events/s of consuming the same records, parsing them and appending them to the
    hash-chained audit log (a database of its own), one transaction per batch: what the
    rules service must do before it judges anything."""

    async def append(connection: asyncpg.Connection, records: list[Any]) -> None:
        events = [eventstore.NewEvent(Envelope.from_json(r.value)) for r in records]
        await eventstore.append(connection, events)

    return await consume_inputs(bootstrap, dsn, "bench-store-ceiling", expected, batch, append)


async def stored_count(pool: asyncpg.Pool, source: str = "/bench/site") -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM events WHERE type = ANY($1::text[]) AND source = $2",
            [SubjectEnrolled.event_type, LabResultReported.event_type],
            source,
        )
    )


async def wait_for(
    pool: asyncpg.Pool, count: int, timeout: float, source: str = "/bench/site"
) -> None:
    deadline = time.monotonic() + timeout
    while await stored_count(pool, source) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {await stored_count(pool, source)} of {count} facts stored")
        await asyncio.sleep(0.5)


async def outbox_drained(pool: asyncpg.Pool, timeout: float, left: int) -> None:
    """Wait until the outbox relay has published all but ``left`` of the signals waiting:
    the warm-up raises the signals of every abnormal prior result at once (the prior results
    were stored without them), a backlog a trial never has, which the steady phase must
    not be charged for."""
    deadline = time.monotonic() + timeout
    while True:
        pending = await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        if pending <= left or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.2)


async def steady_rate(pool: asyncpg.Pool) -> tuple[float, int]:
    """Events/s of the measured events committed after the last warm-up event (the
    service's first sight of each subject left out), and how many that rate is over."""
    row = await pool.fetchrow(
        "WITH warm AS (SELECT max(pg_xact_commit_timestamp(xmin)) AS t0 FROM events "
        "WHERE source = '/bench/warm-up') "
        "SELECT count(*) AS n, min(pg_xact_commit_timestamp(e.xmin)) AS first, "
        "max(pg_xact_commit_timestamp(e.xmin)) AS last FROM events e, warm "
        "WHERE e.source = '/bench/site' AND pg_xact_commit_timestamp(e.xmin) > warm.t0"
    )
    if not row["n"] or row["first"] == row["last"]:
        return 0.0, 0
    # the first batch after the warm-up is the clock's start: its own events are not counted
    first_batch = await pool.fetchval(
        "SELECT count(*) FROM events WHERE source = '/bench/site' "
        "AND pg_xact_commit_timestamp(xmin) = $1",
        row["first"],
    )
    counted = int(row["n"]) - int(first_batch)
    return counted / (row["last"] - row["first"]).total_seconds(), counted


async def paced(
    bootstrap: str, pool: asyncpg.Pool, rate: int, seconds: int, subjects: int
) -> list[float]:
    """Publish at ``rate`` events/s; latency (ms) from publishing a result to its signal."""
    producer = AIOKafkaProducer(**kafka_client_options(local(bootstrap)), acks="all")
    await producer.start()
    sent: dict[uuid.UUID, float] = {}
    total = rate * seconds
    began = time.time()
    try:
        for n in range(total):
            # every 10th event a low haemoglobin, and the next one a normal one for the same
            # subject, so that each low value opens a new episode and raises a signal
            subject = f"B{(n // 10) % subjects:05d}"
            payload = result(subject, 10_000 + n, abnormal=False)
            if n % 10 in (0, 1):
                payload = payload.model_copy(
                    update={
                        "loinc_code": "718-7",
                        "unit": "g/dL",
                        "value": Decimal("8.2" if n % 10 == 0 else "13.4"),
                        "reference_low": Decimal(12),
                        "reference_high": Decimal(16),
                    }
                )
            envelope = wrap(payload, source="/bench/site")
            due = began + n / rate
            if (pause := due - time.time()) > 0:
                await asyncio.sleep(pause)
            sent[envelope.id] = time.time()
            await producer.send(
                topic_for(type(payload)), envelope.to_json(), key=(envelope.subject or "").encode()
            )
        await producer.flush()
    finally:
        await producer.stop()
    await asyncio.sleep(5)
    rows = await pool.fetch(
        "SELECT (envelope->>'causationid')::uuid AS cause, "
        "pg_xact_commit_timestamp(xmin) AS committed FROM events "
        "WHERE type = 'org.vigil.safety_signal.raised.v1' "
        "AND (envelope->>'causationid')::uuid = ANY($1::uuid[])",
        list(sent),
    )
    return [(r["committed"].timestamp() - sent[r["cause"]]) * 1000 for r in rows]


def start_rules(
    env: dict[str, str], log_path: Path, profile: str | None
) -> list[subprocess.Popen[bytes]]:
    """The rules service as its own process, as it runs in production; with ``profile``,
    py-spy attached to it as a second process (stopped first, so it writes its file)."""
    with log_path.open("wb") as log:
        rules = subprocess.Popen(
            [sys.executable, "-m", "vigil", "rules"], env=env, stdout=log, stderr=log
        )
    if not profile:
        return [rules]
    return [start_profiler(rules.pid, profile), rules]


def _met(met: bool) -> str:
    return "met" if met else "MISSED"


async def bench(
    events: int,
    subjects: int,
    batch: int,
    rate: int,
    seconds: int,
    profile: str | None,
    instances: int = 1,
    prior: int | None = None,
    partitions: int = 4,
    profile_steady: bool = False,
) -> None:
    folder = Path(tempfile.mkdtemp(prefix="vigil-bench-rules-", dir="/tmp"))
    os.chmod(folder, 0o755)  # noqa: S103 - the postgres account must reach the cluster folder
    # commit timestamps: the rules service records a batch at the time it took it up, and
    # judges before it commits; what counts here is when its rows became visible
    cluster = PrivateCluster(
        folder / "data",
        free_port(),
        fsync=True,
        log_file=folder / "pg.log",
        settings=("track_commit_timestamp=on",),
    )
    broker = TansuBroker(free_port(), log_file=folder / "tansu.log")
    cluster.start()
    broker.start()
    running: list[subprocess.Popen[bytes]] = []
    try:
        await upgrade(cluster.dsn)
        settings = VigilSettings(kafka_bootstrap=broker.bootstrap, kafka_partitions=partitions)
        await ensure_topics(settings)
        warm: list[Envelope] = []
        if prior is not None:
            took = await load_prior(cluster.dsn, subjects, prior)
            print(
                f"prior    : {subjects:,} subjects enrolled with {prior:,} results each, "
                f"stored in {took:.0f} s",
                flush=True,
            )
            warm = warm_up(subjects, prior)
            await publish(broker.bootstrap, warm)  # ahead of the measured ones everywhere
        envelopes = trial(events, subjects, first=None if prior is None else prior + 1)
        records = len(warm) + events

        async def ceilings() -> tuple[float, float]:
            raw_rate = await ceiling(broker.bootstrap, cluster.dsn, records, batch)
            print(f"ceiling  : {raw_rate:>8,.0f} events/s  (consume + COPY, batches of {batch})")
            admin = await asyncpg.connect(cluster.dsn)
            await admin.execute("CREATE DATABASE bench_store")
            await admin.close()
            store_dsn = cluster.dsn.rsplit("/", 1)[0] + "/bench_store"
            await upgrade(store_dsn)
            store_rate = await store_ceiling(broker.bootstrap, store_dsn, records, batch)
            print(
                f"audit log: {store_rate:>8,.0f} events/s  (consume + parse + hash-chained "
                "append, no rule work)"
            )
            return raw_rate, store_rate

        if prior is None:
            print(f"publishing {events:,} facts for {subjects:,} subjects...", flush=True)
            await publish(broker.bootstrap, envelopes)
            raw_rate, store_rate = await ceilings()

        port = free_port()
        env = {
            **os.environ,
            "VIGIL_DATABASE_URL": cluster.dsn,
            "VIGIL_KAFKA_BOOTSTRAP": broker.bootstrap,
            "VIGIL_KAFKA_PARTITIONS": str(partitions),
            "VIGIL_STUDY_DIR": str(REPO / "studies"),
            "VIGIL_RULES_PORT": str(port),
            "VIGIL_RULES_BATCH_MAX_RECORDS": str(batch),
            "VIGIL_AUDIT_ANCHOR_FILE": str(folder / "anchors.jsonl"),
            "VIGIL_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            # a bench on one machine: /metrics open, the superuser's DSN
            "VIGIL_ENVIRONMENT": "development",
        }
        later = profile if profile_steady and prior is not None else None
        for number in range(instances):
            port = free_port()
            running += start_rules(
                {**env, "VIGIL_RULES_PORT": str(port)},
                folder / f"rules-{number}.log",
                profile if number == 0 and later is None else None,
            )
        first_rules = running[-instances] if instances else None
        pool = await asyncpg.create_pool(cluster.dsn, min_size=1, max_size=2)
        # generous: on a shared machine the service may get a fraction of a core, and the
        # first sight of each subject reads and walks its whole history once
        warm_timeout = max(300.0, events / 50, subjects * ((prior or 0) + 1) / 300)
        await wait_for(pool, len(warm), timeout=warm_timeout, source="/bench/warm-up")
        if prior is not None:  # the warm-up's signals published first (see the module)
            await outbox_drained(pool, timeout=warm_timeout, left=batch)
        if later is not None and first_rules is not None:
            running.insert(0, start_profiler(first_rules.pid, later))  # stopped first
        if prior is not None:
            print(f"publishing {events:,} facts for {subjects:,} subjects...", flush=True)
            await publish(broker.bootstrap, envelopes)
        await wait_for(pool, events, timeout=max(300.0, events / 50))
        if prior is not None:  # over the same records, now that the service is idle
            raw_rate, store_rate = await ceilings()
        first, last = await pool.fetchrow(
            "SELECT min(pg_xact_commit_timestamp(xmin)), max(pg_xact_commit_timestamp(xmin)) "
            "FROM events WHERE source = '/bench/site'"
        )
        sustained = events / (last - first).total_seconds()
        signals = await pool.fetchval(
            "SELECT count(*) FROM events WHERE type LIKE 'org.vigil.safety_signal.%'"
        )
        print(
            f"sustained: {sustained:>8,.0f} events/s  (rules service x{instances}; "
            f"{signals:,} signal events)"
        )
        ratio = sustained / raw_rate
        of_log = sustained / store_rate
        print(
            f"sustained / ceiling = {ratio:.2f}; sustained / audit log = {of_log:.2f} "
            f"(target >= 0.50: {_met(of_log >= 0.5)}); audit log / ceiling = "
            f"{store_rate / raw_rate:.2f} (target >= 0.50: {_met(store_rate / raw_rate >= 0.5)})"
        )
        if instances == 1:
            print(f"one instance: target >= 10,000 events/s: {_met(sustained >= 10_000)}")

        if prior is not None:
            steady, counted = await steady_rate(pool)
            print(
                f"steady   : {steady:>8,.0f} events/s  ({prior:,} prior results per subject; "
                f"over {counted:,} events after the warm-up); "
                "steady / audit log = "
                f"{steady / store_rate:.2f}, steady / ceiling = {steady / raw_rate:.2f}",
                flush=True,
            )
        if seconds <= 0:
            await pool.close()
            return
        latencies = await paced(broker.bootstrap, pool, rate, seconds, subjects)
        await pool.close()
        if latencies:
            p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
            target = "met" if p99 < 250 else "MISSED"
            print(
                f"latency at {rate} events/s: p50 {p50:.0f} ms, p99 {p99:.0f} ms over "
                f"{len(latencies)} signals, publish to signal commit (target p99 < 250 ms: "
                f"{target})"
            )
        else:
            print("latency: no signals were raised in the paced phase")
    finally:
        stop_processes(running)  # py-spy first: it writes its profile on SIGINT
        broker.stop()
        cluster.stop()
        remove_folder(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--subjects", type=int, default=600)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--profile", help="record the rules service with py-spy to this file")
    parser.add_argument(
        "--profile-steady",
        action="store_true",
        help="with --prior: attach the profiler only after the warm-up (the steady cost)",
    )
    parser.add_argument(
        "--instances",
        default="1,2",
        help="rules-service instances in one consumer group; a comma-separated list runs "
        "the benchmark once per count",
    )
    parser.add_argument(
        "--prior",
        help="growth: a comma-separated list of prior results per subject (e.g. 10,100,1000); "
        "the benchmark runs once per count, with a warm-up, and prints the steady rate",
    )
    parser.add_argument(
        "--partitions",
        type=int,
        default=4,
        help="partitions of each topic: instances beyond it have nothing to consume",
    )
    args = parser.parse_args()
    counts = [int(part) for part in args.instances.split(",")]
    priors: list[int | None] = (
        [int(part) for part in args.prior.split(",")] if args.prior else [None]
    )
    for count in counts:
        for prior in priors:
            label = f" with {prior:,} prior results per subject" if prior is not None else ""
            print(
                f"--- {count} rules instance{'s' if count > 1 else ''}{label}, "
                f"{args.partitions} partitions per topic",
                flush=True,
            )
            profile = args.profile
            if profile and len(counts) * len(priors) > 1:
                profile = f"{profile}.x{count}" + (f".p{prior}" if prior is not None else "")
            asyncio.run(
                bench(
                    args.events,
                    args.subjects,
                    args.batch,
                    args.rate,
                    args.seconds,
                    profile,
                    count,
                    prior,
                    args.partitions,
                    args.profile_steady,
                )
            )


if __name__ == "__main__":
    main()
