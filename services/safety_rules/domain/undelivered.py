"""What the watchdog reports: the protocol-threshold and serious signals nobody has been
told about within the deadline, as ids, subjects, rules and times only, and the report's
words for an e-mail and its document for a webhook."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.events.payloads import EVENT_ID_NAMESPACE
from shared.message_text import header_value, single_line


@dataclass(frozen=True)
class UndeliveredSignal:
    """A signal nobody has been told about yet: ids and times only."""

    signal_id: uuid.UUID
    study_id: str
    subject_id: str
    rule_id: str
    recorded_at: datetime
    position: int


@dataclass(frozen=True)
class WatchdogReport:
    """Signals nobody was told about within the deadline: ids, subjects and rules only."""

    signals: Sequence[UndeliveredSignal]
    deadline_seconds: float
    now: datetime

    @property
    def key(self) -> str:
        """The same for the same signals: a receiver can drop a repeat."""
        ids = ",".join(sorted(str(s.signal_id) for s in self.signals))
        return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"watchdog-report:{ids}"))

    def subject(self) -> str:
        minutes = self.deadline_seconds / 60
        return header_value(
            f"[Vigil watchdog] {len(self.signals)} safety signal(s) not delivered within "
            f"{minutes:g} min"
        )

    def lines(self) -> list[str]:
        return [
            single_line(
                f"signal {s.signal_id}  study {s.study_id}  subject {s.subject_id}  "
                f"rule {s.rule_id}  recorded {s.recorded_at.isoformat()}  waiting "
                f"{(self.now - s.recorded_at).total_seconds() / 60:.0f} min"
            )
            for s in self.signals
        ]

    def text(self) -> str:
        return "\n".join(
            [
                "Nobody has been told about these protocol-threshold or serious safety "
                f"signals within {self.deadline_seconds / 60:g} minutes: no e-mail or webhook "
                "delivery succeeded and none was acknowledged.",
                "",
                *self.lines(),
                "",
                "What to do: tell the sites by another way now; then check the notifier "
                "(/readyz and /tasks on VIGIL_NOTIFIER_PORT, and its log), its SMTP server "
                "and webhooks. `vigil rules explain SIGNAL_ID` explains each signal.",
                "Each signal is reported once; the report is recorded in the audit log "
                "(stream watchdog-SIGNAL_ID).",
            ]
        )

    def document(self) -> dict[str, Any]:
        return {
            "type": "vigil.watchdog.undelivered-signals",
            "deadline_seconds": self.deadline_seconds,
            "signals": [
                {
                    "signal_id": str(s.signal_id),
                    "study_id": s.study_id,
                    "subject_id": s.subject_id,
                    "rule_id": s.rule_id,
                    "recorded_at": s.recorded_at.isoformat(),
                }
                for s in self.signals
            ],
        }
