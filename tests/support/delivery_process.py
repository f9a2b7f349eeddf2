"""A delivery worker as its own process, for tests that SIGKILL it mid-batch.

Usage: python -m tests.support.delivery_process DSN SMTP_PORT LEASE_SECONDS
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

from services.notifier.adapters.smtp import SmtpSender
from services.notifier.domain.links import LinkIssuer, LinkKey, LinkKeyRing
from services.notifier.entrypoints.delivery_worker import DeliveryWorker
from shared.db.pool import create_pool
from shared.supervision import Supervisor


async def main(dsn: str, smtp_port: int, lease: float) -> None:
    pool = await create_pool(dsn)
    worker = DeliveryWorker(
        pool,
        {"email": SmtpSender(f"smtp://127.0.0.1:{smtp_port}", "vigil@x.org", timeout=10)},
        rosters={},
        links=LinkIssuer(LinkKeyRing(LinkKey("k", b"k" * 32)), "http://x", timedelta(hours=1)),
        retry_max_seconds=1,
        give_up_after_seconds=600,
        lease_seconds=lease,
        batch_size=10,
    )
    print("ready", flush=True)
    async with Supervisor("delivery-process") as supervisor:
        supervisor.start("delivery-worker", worker.run)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
