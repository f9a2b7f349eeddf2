"""Workspace benchmark: how long the pages people open most take on a trial-sized study.

A private PostgreSQL cluster holds one study's subjects at two sites, each with results of
six analytes at every visit; the notifier's workspace is served in-process (the real
routers, sign-in and chart drawing) and a signed-in medical monitor opens: a subject page
drawn afresh, the same page again (from the chart cache), the eDISH plot of the study, and
the inbox. Prints figures; asserts nothing (machines are shared and noisy).

    make bench-workspace
    python benchmarks/bench_workspace.py --subjects 200 --visits 50
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
from fastapi import FastAPI

from services.notifier.adapters.passwords import hash_password
from services.notifier.adapters.roster_files import load_rosters
from services.notifier.adapters.workspace_accounts import set_password
from services.notifier.entrypoints.workspace import account, install_workspace
from services.notifier.entrypoints.workspace.common import WorkspaceDeps
from services.notifier.main import notifier_context
from services.settings import VigilSettings
from shared import eventstore
from shared.clock import SystemClock
from shared.db.migrate import upgrade
from shared.db.pool import create_pool
from shared.events import LabResultReported, SubjectEnrolled, wrap
from vigil.devstack.ports import free_port
from vigil.devstack.postgres import PrivateCluster

STUDY = "NCT05262686"
SITES = ("PKUPH-01", "PKUPH-02")
# (LOINC, unit, reference low, reference high, typical value)
ANALYTES = (
    ("1742-6", "U/L", 7, 40, 25),  # ALT
    ("1920-8", "U/L", 8, 40, 24),  # AST
    ("1975-2", "mg/dL", 0.2, 1.2, 0.7),  # total bilirubin
    ("718-7", "g/dL", 12, 16, 13.5),  # haemoglobin
    ("751-8", "10*9/L", 1.8, 7.5, 4.0),  # neutrophils
    ("2160-0", "mg/dL", 0.6, 1.1, 0.8),  # creatinine
)
# a fresh one each run, for a monitor of a throwaway cluster
PASSWORD = secrets.token_urlsafe(18)


def subject_events(subject: str, site: str, visits: int) -> list[eventstore.NewEvent]:
    day0 = date(2026, 1, 10)
    events = [
        SubjectEnrolled(
            study_id=STUDY,
            subject_id=subject,
            site_id=site,
            sex="F",
            birth_date=date(1980, 5, 1),
            weight_kg=Decimal(60),
            day0=day0,
        )
    ]
    for visit in range(visits):
        collected = datetime(2026, 1, 3, 1, 30, tzinfo=UTC) + timedelta(days=7 * visit)
        for n, (code, unit, low, high, typical) in enumerate(ANALYTES):
            value = Decimal(str(round(typical * (1 + ((visit * 7 + n) % 11 - 5) / 20), 2)))
            events.append(
                LabResultReported(
                    study_id=STUDY,
                    subject_id=subject,
                    loinc_code=code,
                    value=value,
                    unit=unit,
                    canonical_value=value,
                    canonical_unit=unit,
                    reference_low=Decimal(str(low)),
                    reference_high=Decimal(str(high)),
                    collected_at=collected,
                    source_message_id=f"BENCH-{subject}-{visit}-{code}",
                )
            )
    return [eventstore.NewEvent(wrap(e, source="/bench")) for e in events]


async def timed(client: httpx.AsyncClient, url: str, repeat: int) -> list[float]:
    seconds = []
    for _ in range(repeat):
        began = time.perf_counter()
        response = await client.get(url)
        seconds.append(time.perf_counter() - began)
        if response.status_code != 200:
            raise SystemExit(f"{url}: {response.status_code}")
    return seconds


def line(label: str, seconds: list[float]) -> str:
    median = statistics.median(seconds) * 1000
    most = max(seconds) * 1000
    return f"{label:<44} median {median:>8.1f} ms  max {most:>8.1f} ms  (n={len(seconds)})"


async def bench(subjects: int, visits: int, repeat: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="vigil-bench-", dir="/tmp"))
    os.chmod(folder, 0o755)  # noqa: S103 - the postgres account must reach the cluster folder
    cluster = PrivateCluster(folder / "data", free_port(), fsync=True, log_file=folder / "log")
    cluster.start()
    try:
        await upgrade(cluster.dsn)
        pool = await create_pool(cluster.dsn, max_size=4)
        print(f"recording {subjects} subjects x {visits} visits x {len(ANALYTES)} analytes...")
        async with pool.acquire() as connection:
            for n in range(subjects):
                site = SITES[n % len(SITES)]
                async with connection.transaction():
                    await eventstore.append(
                        connection, subject_events(f"{n % 2 + 1:02d}-{n:04d}", site, visits)
                    )
            await set_password(
                connection, "mm-01", hash_password(PASSWORD), now=datetime.now(UTC),
                changed_by="benchmark",
            )  # fmt: skip
        settings = VigilSettings(environment="development")
        rosters = load_rosters(settings.study_dir)
        context = notifier_context(settings, rosters, SystemClock())
        app = FastAPI()
        install_workspace(
            app,
            WorkspaceDeps(
                pool=lambda: pool,
                context=context,
                settings=settings,
                authenticator=account.authenticator(lambda: pool, context, settings),
            ),
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            signed_in = await client.post(
                "/workspace/sign-in",
                data={"name": "mm-01", "password": PASSWORD, "next": "/workspace/inbox"},
                headers={"sec-fetch-site": "same-origin"},
            )
            if signed_in.status_code != 303:
                raise SystemExit(f"sign-in: {signed_in.status_code}")
            subject = f"/workspace/studies/{STUDY}/subjects/01-0000"
            fresh = []
            for n in range(repeat):
                url = f"/workspace/studies/{STUDY}/subjects/{n % 2 + 1:02d}-{n:04d}"
                fresh += await timed(client, url, 1)
            print(line("subject page, drawn (6 charts)", fresh))
            print(line("subject page, from the chart cache", await timed(client, subject, repeat)))
            print(line(f"eDISH plot of {subjects} subjects", await timed(
                client, f"/workspace/studies/{STUDY}/edish", max(repeat // 2, 2))))  # fmt: skip
            print(line("inbox", await timed(client, "/workspace/inbox", repeat)))
        await pool.close()
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subjects", type=int, default=200)
    parser.add_argument("--visits", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(bench(args.subjects, args.visits, args.repeat))


if __name__ == "__main__":
    main()
