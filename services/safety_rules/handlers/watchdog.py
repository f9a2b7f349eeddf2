"""Alerting about alerting: a protocol-threshold or serious signal nobody has been told
about in time is reported on a second channel that does not go through the notifier.

Each round reads from the audit log which such signals no delivery has reached yet, sets
``vigil_oldest_undelivered_signal_age_seconds`` (so Prometheus sees a stuck notifier even
when the notifier is dead), and reports the ones waiting longer than the deadline on the
watchdog's own channels, once per signal: the report is recorded in the audit log in the
same transaction, and an advisory lock keeps two rules instances from both sending it.
If the report cannot be sent, nothing is recorded and the next round tries again.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import structlog

from services.safety_rules import metrics
from services.safety_rules.domain.undelivered import UndeliveredSignal, WatchdogReport
from services.safety_rules.handlers.ports import ReportChannel, WatchdogLog
from shared.events import wrap
from shared.events.operations import UndeliveredSignalReported, watchdog_stream
from shared.eventstore import EventStore, NewEvent
from shared.failures import failure_summary, is_outage
from shared.supervision import Progress

log = structlog.get_logger(__name__)
SOURCE = "/vigil/safety-rules/watchdog"


class ReportNotSent(Exception):
    """No channel took the report; it is tried again next round."""


class Watchdog:
    """Measures the undelivered signals and reports the overdue ones, once each."""

    def __init__(
        self,
        audit_log: WatchdogLog,
        channels: Sequence[ReportChannel],
        *,
        deadline_seconds: float,
    ) -> None:
        self._log = audit_log
        self._channels = channels
        self._deadline = deadline_seconds

    async def round(self, progress: Progress | None = None) -> int:
        """One look at the log; returns how many signals it reported."""
        waiting, now = await self._log.waiting()
        ages = [(now - signal.recorded_at).total_seconds() for signal in waiting]
        metrics.UNDELIVERED_SIGNALS.set(len(waiting))
        metrics.OLDEST_UNDELIVERED_SIGNAL_AGE.set(max(ages, default=0.0))
        overdue = [s for s, age in zip(waiting, ages, strict=True) if age >= self._deadline]
        if not overdue or not self._channels:
            return 0
        async with self._log.reporting() as store:
            if store is None:
                return 0  # another instance is reporting
            done = await reported(store, overdue)
            fresh = [signal for signal in overdue if signal.signal_id not in done]
            if not fresh:
                return 0
            report = WatchdogReport(fresh, self._deadline, now)
            channels = await self._send(report)
            await store.append(
                [NewEvent(wrap(event, source=SOURCE, event_id=event.report_id()))
                 for event in self._events(fresh, channels)],
            )  # fmt: skip
        for channel in channels:
            metrics.WATCHDOG_REPORTS.labels(channel).inc(len(fresh))
        log.error(
            "watchdog.undelivered_signals_reported",
            signal_ids=[str(s.signal_id) for s in fresh],
            rules=sorted({s.rule_id for s in fresh}),
            channels=channels,
        )
        return len(fresh)

    async def _send(self, report: WatchdogReport) -> list[str]:
        """Send on every channel; the names of those that took it (at least one)."""
        sent, errors = [], []
        for channel in self._channels:
            try:
                await channel.send(report)
            except Exception as error:
                log.error("watchdog.channel_failed", channel=channel.name, error=repr(error))
                errors.append(error)
            else:
                sent.append(channel.name)
        if not sent:
            first = errors[0]
            if is_outage(first):
                raise first
            raise ReportNotSent(f"no watchdog channel took the report: {failure_summary(first)}")
        return sent

    def _events(
        self, signals: Sequence[UndeliveredSignal], channels: Sequence[str]
    ) -> list[UndeliveredSignalReported]:
        return [
            UndeliveredSignalReported(
                study_id=signal.study_id,
                subject_id=signal.subject_id,
                signal_id=signal.signal_id,
                rule_id=signal.rule_id,
                signal_recorded_at=signal.recorded_at,
                deadline_seconds=self._deadline,
                channels=tuple(channels),
            )
            for signal in signals
        ]


async def reported(store: EventStore, signals: Sequence[UndeliveredSignal]) -> set[uuid.UUID]:
    """Which of these signals the watchdog has reported already."""
    by_stream = {watchdog_stream(s.signal_id): s.signal_id for s in signals}
    found = await store.existing_streams(by_stream)
    return {by_stream[stream_id] for stream_id in found}
