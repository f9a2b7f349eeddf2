"""The watchdog's rounds on its ports in memory: an urgent signal nobody was told about in
time is reported on the watchdog's own channels once, and the report is recorded; nothing
is recorded when no channel takes it, or while another instance reports
(tests/e2e/test_watchdog.py runs it in the rules service on PostgreSQL)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from services.safety_rules.adapters.in_memory import InMemoryWatchdogLog
from services.safety_rules.domain.undelivered import WatchdogReport
from services.safety_rules.handlers.watchdog import ReportNotSent, Watchdog
from shared.events import Envelope
from shared.events.operations import UndeliveredSignalReported, watchdog_stream
from shared.eventstore import InMemoryEventStore, NewEvent
from tests.support.notifier import ManualClock, raised, signal_of

DEADLINE = 600.0


@dataclass
class Channel:
    """A report channel that keeps what it was sent, or refuses everything."""

    name: str
    refuses: bool = False
    sent: list[WatchdogReport] = field(default_factory=list)

    async def send(self, report: WatchdogReport) -> None:
        if self.refuses:
            raise RuntimeError(f"{self.name} is down")
        self.sent.append(report)


async def logged(*envelopes: Envelope) -> tuple[InMemoryWatchdogLog, ManualClock]:
    clock = ManualClock()
    store = InMemoryEventStore(clock)
    await store.append([NewEvent(envelope) for envelope in envelopes])
    return InMemoryWatchdogLog(store, clock), clock


async def reports_of(audit_log: InMemoryWatchdogLog, signal: Envelope) -> list[str]:
    stream = await audit_log.store.read_stream(watchdog_stream(signal_of(signal).signal_id))
    return [event.type for event in stream]


async def test_an_overdue_signal_is_reported_once_on_every_channel_and_recorded() -> None:
    signal = raised()
    audit_log, clock = await logged(signal)
    email, webhook = Channel("email"), Channel("webhook")
    watchdog = Watchdog(audit_log, [email, webhook], deadline_seconds=DEADLINE)
    assert await watchdog.round() == 0  # not overdue yet

    clock.advance(seconds=DEADLINE)

    assert await watchdog.round() == 1
    assert [s.signal_id for s in email.sent[0].signals] == [signal_of(signal).signal_id]
    assert len(webhook.sent) == 1
    assert await reports_of(audit_log, signal) == [UndeliveredSignalReported.event_type]
    assert await watchdog.round() == 0  # once per signal
    assert len(email.sent) == 1


async def test_a_report_no_channel_took_is_not_recorded_and_is_tried_again() -> None:
    signal = raised()
    audit_log, clock = await logged(signal)
    channel = Channel("email", refuses=True)
    watchdog = Watchdog(audit_log, [channel], deadline_seconds=DEADLINE)
    clock.advance(seconds=DEADLINE)

    with pytest.raises(ReportNotSent, match="no watchdog channel took the report"):
        await watchdog.round()

    assert await reports_of(audit_log, signal) == []
    channel.refuses = False
    assert await watchdog.round() == 1


async def test_the_report_names_only_the_channels_that_took_it() -> None:
    signal = raised()
    audit_log, clock = await logged(signal)
    watchdog = Watchdog(
        audit_log, [Channel("email", refuses=True), Channel("webhook")], deadline_seconds=DEADLINE
    )
    clock.advance(seconds=DEADLINE)

    assert await watchdog.round() == 1

    [report] = await audit_log.store.read_stream(watchdog_stream(signal_of(signal).signal_id))
    assert report.payload["channels"] == ["webhook"]


async def test_nothing_is_reported_while_another_instance_reports_or_without_a_channel() -> None:
    audit_log, clock = await logged(raised())
    channel = Channel("email")
    clock.advance(seconds=DEADLINE)

    async with audit_log.reporting():  # another instance's turn
        assert await Watchdog(audit_log, [channel], deadline_seconds=DEADLINE).round() == 0
    assert await Watchdog(audit_log, [], deadline_seconds=DEADLINE).round() == 0
    assert channel.sent == []
