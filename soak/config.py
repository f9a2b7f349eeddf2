"""What one soak run does: the stream's size and rate, the faults, the poison, the seed.

Two presets: ``full`` is what ``make soak`` runs (the figures the issue asks for: at least
50,000 events, 20 SIGKILLs of the rules service, ...); ``short`` is the variant the test
suite runs on every ``make test`` so that the checker itself is guarded (a few thousand
events, a few faults of each kind, under three minutes on a 2-core machine).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

# Poison records the stream mixes in; each must be refused (4xx, AE, AR) or kept as
# rejected input, never acknowledged and then lost.
POISON_KINDS: tuple[str, ...] = (
    "json-date-out-of-range",  # collected_at 9999-12-31T23:00:00-14:00
    "json-huge-number",  # value "1E+400"
    "fhir-date-out-of-range",  # an Observation effective in the year 9999, -14:00
    "hl7-not-hl7",  # an MLLP frame whose content is not an HL7 message
    "hl7-unbuildable",  # an ADT^A04 whose PID-3 (subject id) holds a space
    "hl7-no-final-cr",  # a frame ending in 0x1C without the final 0x0D
)


@dataclass(frozen=True)
class FaultCounts:
    """How many faults of each kind the schedule holds."""

    rules_kills: int = 20
    ingest_kills: int = 5
    notifier_kills: int = 5
    broker_restarts: int = 2
    postgres_restarts: int = 3
    smtp_outages: int = 3
    smtp_outage_seconds: float = 20.0

    @property
    def total(self) -> int:
        return (
            self.rules_kills
            + self.ingest_kills
            + self.notifier_kills
            + self.broker_restarts
            + self.postgres_restarts
            + self.smtp_outages
        )


@dataclass(frozen=True)
class SoakConfig:
    """One run's parameters; ``events`` counts facts (enrolments, results, AEs,
    medications), not messages: an HL7 ORU with five OBX is five events."""

    events: int = 50_000
    rate: float = 100.0  # facts per second, steady
    seed: int = 13
    subjects: int | None = None  # default: one per 100 events, at least 24
    scripted_share: float = 0.08  # share of subjects given a scripted finding
    poison_every: int = 150  # one poison message every this many messages
    poison_kinds: tuple[str, ...] = POISON_KINDS
    faults: FaultCounts = field(default_factory=FaultCounts)
    # faults on different components may run at the same time (a broker restart while the
    # notifier is down); off, they come one at a time and each miss has one suspect
    overlap: bool = True
    lanes_per_channel: int = 2  # senders per channel (a lab keeps one connection each)
    delivery_budget_seconds: float = 60.0  # a signal's e-mail within this of recovery
    drain_timeout_seconds: float = 420.0  # wait this long at most for the pipeline to settle
    give_up_seconds: float = 900.0  # a sender stops resending one message after this
    state_dir: Path | None = None  # logs and data; a fresh folder under /tmp when None
    # environment for the three services on top of the soak's own (ports, database...)
    service_env: dict[str, str] = field(default_factory=dict)

    @property
    def subject_count(self) -> int:
        return self.subjects if self.subjects is not None else max(24, self.events // 100)

    @property
    def stream_seconds(self) -> float:
        """How long the stream takes at the configured rate."""
        return self.events / self.rate


def full() -> SoakConfig:
    """``make soak``: the whole figure set, with the services' default settings; faults on
    different components overlap, as independent failures do."""
    return SoakConfig()


def short() -> SoakConfig:
    """The variant ``make test`` runs: a few thousand events and a few faults of each kind.

    One fault at a time; the re-drive wait is shortened (5 s instead of 30 s) so that a
    broker restart is healed within the short drain; everything else is the services'
    defaults.
    """
    return replace(
        SoakConfig(),
        overlap=False,
        events=3_000,
        rate=60.0,
        subjects=30,
        scripted_share=0.2,
        poison_every=40,
        faults=FaultCounts(
            rules_kills=2,
            ingest_kills=1,
            notifier_kills=1,
            broker_restarts=1,
            postgres_restarts=1,
            smtp_outages=1,
            smtp_outage_seconds=12.0,
        ),
        drain_timeout_seconds=80.0,
        give_up_seconds=150.0,
        service_env={"VIGIL_INGEST_REDRIVE_AFTER_SECONDS": "5"},
    )
