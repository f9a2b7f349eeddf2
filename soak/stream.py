"""Senders: the workload paced at a steady rate, resent until acknowledged, as labs do.

Items are spread over lanes; a lane is one sending system with one connection, sending its
messages in order and each one until it is answered (so one subject's messages through
one channel stay in order). A lane behind its schedule (ingest was down) catches up at
once, as a real interface engine drains its queue. Poison goes through a lane of its
own, on a fresh connection each time, so that a message that gets no answer is told apart
from a connection that died under a fault.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from soak.client import Answer, IngestClient
from soak.messages import kept_bytes, render
from soak.workload import Item

Outcome = str  # a client Verdict, or "gave-up" when the sender stopped resending


@dataclass
class Sent:
    """What happened to one item: when it was first sent and answered, and how."""

    item: Item
    kept: bytes  # the bytes ingest keeps verbatim (for refused messages: in rejected-input)
    first_sent_at: float = 0.0  # wall clock (time.time), like everything the checker compares
    answered_at: float | None = None
    outcome: Outcome = "unsent"
    detail: str = ""
    attempts: int = 0
    retries: Counter[str] = field(default_factory=Counter)  # why it was resent, by answer

    @property
    def acknowledged(self) -> bool:
        return self.outcome == "acknowledged"


@dataclass
class Ledger:
    """Every item the senders handled, in workload order."""

    sent: list[Sent] = field(default_factory=list)
    started_at: float = 0.0
    finished_at: float = 0.0

    def of(self, items: Sequence[Item]) -> list[Sent]:
        wanted = {item.seq for item in items}
        return [s for s in self.sent if s.item.seq in wanted]


def lane_of(item: Item, lanes_per_channel: int) -> str:
    if item.poison is not None:
        return "poison"
    # crc32, not hash(): the same subject takes the same lane in every run
    return f"{item.channel}-{zlib.crc32(item.subject.encode()) % lanes_per_channel}"


class Sender:
    """Sends one lane's items in order, each until it is answered or given up."""

    def __init__(self, client: IngestClient, *, give_up_seconds: float) -> None:
        self._client = client
        self._give_up = give_up_seconds

    async def deliver(self, record: Sent) -> None:
        poison = record.item.poison is not None
        wire = render(record.item)
        record.first_sent_at = time.time()
        deadline = time.monotonic() + self._give_up
        pause, silent = 0.25, 0
        while True:
            record.attempts += 1
            answer: Answer = await self._client.send(wire, fresh=poison)
            if answer.verdict in ("acknowledged", "refused"):
                break
            if answer.verdict == "no-answer":
                # a normal message is resent at once, on a new connection; a poison frame
                # gets one more chance, in case a fault broke the first connection
                silent += 1
                if poison and silent >= 2:
                    break
            record.retries[answer.detail.split(":")[0][:60]] += 1
            if time.monotonic() >= deadline:
                record.outcome, record.detail = "gave-up", answer.detail
                return
            if answer.verdict == "try-again":
                await asyncio.sleep(answer.retry_after or pause)
                pause = min(pause * 2, 2.0)
        record.answered_at = time.time()
        record.outcome, record.detail = answer.verdict, answer.detail


async def send_all(
    items: Sequence[Item],
    ledger: Ledger,
    *,
    rate: float,
    lanes_per_channel: int,
    client_factory: Callable[[], IngestClient],
    give_up_seconds: float,
) -> None:
    """Send ``items`` at ``rate`` facts per second (poison costs the time of one fact)."""
    records = [Sent(item, kept_bytes(render(item))) for item in items]
    ledger.sent.extend(records)
    lanes: dict[str, list[tuple[float, Sent]]] = {}
    due = 0.0
    for record in records:
        lanes.setdefault(lane_of(record.item, lanes_per_channel), []).append((due, record))
        due += max(len(record.item.facts), 1) / rate
    begin = time.monotonic()

    async def lane(queue: list[tuple[float, Sent]]) -> None:
        client = client_factory()
        sender = Sender(client, give_up_seconds=give_up_seconds)
        try:
            for when, record in queue:
                wait = begin + when - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await sender.deliver(record)
        finally:
            await client.close()

    await asyncio.gather(*(lane(queue) for queue in lanes.values()))
