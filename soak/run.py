"""One soak run, start to end: the stack up, the enrolments, the stream with the faults, the
drain, the evidence, the figures and the report; the stack down again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from services.ingest.adapters.key_store import KeyScope, create_key
from services.ingest.domain.development import DEVELOPMENT_SOURCE
from soak.checker import Figures, check
from soak.client import Credential, IngestClient
from soak.config import SoakConfig
from soak.evidence import Evidence, audit_verify, read_database
from soak.faults import Injector, Timeline, plan
from soak.observers import Observed, PositionSampler, TopicTap
from soak.report import render
from soak.stack import REPO, Stack, start_stack
from soak.stream import Ledger, send_all
from soak.workload import STUDY, Workload, generate

ENROLMENT_RATE = 50.0  # facts per second while the subjects are enrolled
SETTLE_POLL_SECONDS = 5.0


@dataclass
class Outcome:
    figures: Figures
    report: str
    folder: Path


def say(message: str) -> None:
    print(f"soak | {message}", file=sys.stderr, flush=True)


async def credential_for(stack: Stack) -> Credential:
    """The credential the soak sends with: ``VIGIL_SOAK_API_KEY`` when set, else a key
    issued now, as `vigil keys create` does (the schema owner's DSN), for the development
    source that `vigil dev` uses, on every study of the study folder. MLLP needs none:
    the stack runs in development settings, where a loopback sender is that same source."""
    given = os.environ.get("VIGIL_SOAK_API_KEY")
    if given:
        return Credential(api_key=given)
    connection = await asyncpg.connect(stack.admin_dsn)
    try:
        scope = KeyScope(DEVELOPMENT_SOURCE, (STUDY,), None, True)
        issued, _ = await create_key(connection, scope, issued_by="soak", expires_in=None)
    finally:
        await connection.close()
    return Credential(api_key=issued.text)


async def _enrolled(dsn: str, count: int, timeout: float) -> None:
    """Wait until every subject's enrolment is in the audit log, so that every later result
    is judged for a known subject at a known site."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(asyncpg.PostgresError, OSError):
            connection = await asyncpg.connect(dsn, timeout=5)
            try:
                stored = await connection.fetchval(
                    "SELECT count(*) FROM events WHERE type = 'org.vigil.subject.enrolled.v1'"
                )
            finally:
                await connection.close()
            if stored >= count:
                return
        await asyncio.sleep(1)
    raise TimeoutError(f"the {count} enrolments did not all reach the audit log in {timeout:.0f}s")


def _settled(figures: Figures, evidence: Evidence) -> bool:
    """Nothing more is on its way: every acknowledged fact recorded, every expected signal
    raised, every planned e-mail sent and received. (Acknowledged poison that was
    dead-lettered stays owed by ingest for ever: it is a loss, not something in transit.)"""
    pending = any(d.status == "pending" for d in evidence.deliveries)
    return not (figures.lost or figures.signals_missing or figures.emails_missing or pending)


async def _gather(
    stack: Stack,
    workload: Workload,
    ledger: Ledger,
    observed: Observed,
    timeline: Timeline,
    config: SoakConfig,
    *,
    verify: bool = False,
) -> tuple[Evidence, Figures]:
    """Read the evidence (and run ``vigil audit verify`` when asked) and check it."""
    evidence = await read_database(stack.admin_dsn, REPO / "studies")
    evidence.mails = stack.mailbox.received()
    if verify:
        evidence.verify = await asyncio.to_thread(audit_verify, stack.env)
    figures = check(
        workload,
        ledger,
        evidence,
        observed,
        timeline,
        budget_seconds=config.delivery_budget_seconds,
    )
    return evidence, figures


async def _drain(
    stack: Stack,
    workload: Workload,
    ledger: Ledger,
    timeline: Timeline,
    config: SoakConfig,
    sampler: PositionSampler,
    tap: TopicTap,
) -> None:
    """Wait until nothing more is on its way, or the drain timeout passed."""
    observed = Observed(sorted(sampler.samples, key=lambda s: s.updated_at), [], tap.epochs)
    deadline = time.monotonic() + config.drain_timeout_seconds
    while True:
        evidence, figures = await _gather(stack, workload, ledger, observed, timeline, config)
        if _settled(figures, evidence) or time.monotonic() > deadline:
            return
        await asyncio.sleep(SETTLE_POLL_SECONDS)


async def run(config: SoakConfig, credential: Credential | None = None) -> Outcome:
    """Run the soak described by ``config``; the stack is stopped whatever happens."""
    began = time.time()
    folder = config.state_dir or Path(tempfile.mkdtemp(prefix="vigil-soak-", dir="/tmp"))
    workload = generate(config)
    say(
        f"{workload.fact_count:,} facts in {len(workload.enrolments) + len(workload.stream):,} "
        f"messages, {len(workload.expected)} expected episodes; starting the stack in {folder}"
    )
    stack = await asyncio.to_thread(start_stack, folder, config.service_env)
    timeline, ledger = Timeline(), Ledger()
    tap = TopicTap(stack.broker.bootstrap)
    sampler = PositionSampler(stack.admin_dsn)
    injector = Injector(
        stack,
        timeline,
        smtp_outage_seconds=config.faults.smtp_outage_seconds,
        broker_listeners=[tap],
    )
    tap.start()
    background = [
        asyncio.create_task(sampler.run(), name="positions"),
        asyncio.create_task(injector.watchdog(), name="watchdog"),
    ]
    try:
        chosen = credential or await credential_for(stack)

        def client() -> IngestClient:
            return IngestClient(stack.ingest_url, stack.mllp_address, chosen)

        say(f"enrolling {len(workload.enrolments)} subjects")
        await send_all(
            workload.enrolments,
            ledger,
            rate=ENROLMENT_RATE,
            lanes_per_channel=config.lanes_per_channel,
            client_factory=client,
            give_up_seconds=config.give_up_seconds,
        )
        await _enrolled(stack.admin_dsn, len(workload.enrolments), timeout=120)
        faults = plan(config.faults, config.stream_seconds, config.seed)
        say(
            f"stream of {len(workload.stream):,} messages at {config.rate:g} facts/s, "
            f"{len(faults)} faults"
        )
        ledger.started_at, start = time.time(), time.monotonic()
        injection = asyncio.create_task(
            injector.run(faults, start, overlap=config.overlap), name="faults"
        )
        background.append(injection)
        await send_all(
            workload.stream,
            ledger,
            rate=config.rate,
            lanes_per_channel=config.lanes_per_channel,
            client_factory=client,
            give_up_seconds=config.give_up_seconds,
        )
        ledger.finished_at = max((s.answered_at or 0.0 for s in ledger.sent), default=time.time())
        say("stream sent; waiting for the remaining faults")
        await injection
        say("faults done; waiting for the pipeline to settle")
        await _drain(stack, workload, ledger, timeline, config, sampler, tap)
        await asyncio.sleep(1.0)  # a last sample of the positions
        say("checking")
        for task in background:
            task.cancel()
        await tap.finish()  # every record the broker holds read, before it is counted
        say(
            f"topic tap: {len(tap.records):,} records; unread at each broker stop: "
            + ", ".join(str(e.unread) for e in tap.epochs)
        )
        observed = Observed(
            sorted(sampler.samples, key=lambda s: s.updated_at),
            list(tap.records.values()),
            tap.epochs,
        )
        observed.write(folder / "observed.jsonl")
        _, figures = await _gather(stack, workload, ledger, observed, timeline, config, verify=True)
    finally:
        for task in background:
            task.cancel()
        await tap.stop()
        await asyncio.to_thread(stack.stop)
    report = render(
        figures,
        config,
        timeline,
        origin=ledger.started_at,
        elapsed=time.time() - began,
        folder=folder,
    )
    (folder / "report.txt").write_text(report + "\n")
    return Outcome(figures, report, folder)
