"""The figures: what was sent against what was recorded and delivered. Pure.

- **lost**: a fact ingest acknowledged (202, 201, AA) that is not in the audit log; a
  poison message acknowledged and then dead-lettered, or found nowhere, is lost too (its
  sender was told it was taken);
- **duplicated**: one fact recorded twice;
- **skipped**: a record below a position the rules service recorded (``consumer_positions``)
  that was not in the audit log at the moment that position was recorded, by broker epoch;
  "stored later" means something else (ingest's re-drive) brought it back afterwards;
- **signals**: exactly one ``raised`` per expected (subject, rule, episode), none elsewhere;
- **e-mails**: per (signal, purpose, recipient) one message: missing, doubled (two
  different Message-IDs), and repeats of one Message-ID counted apart (receivers drop them);
- **late**: a signal's first e-mail later than the budget after
  max(its fact was acknowledged, the end of the last fault before the e-mail).
"""

from __future__ import annotations

import bisect
import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from soak.evidence import Evidence
from soak.faults import Timeline
from soak.messages import poison_fact_keys
from soak.observers import Observed
from soak.skipped import skipped_records
from soak.stream import Ledger, Sent
from soak.workload import Episode, FactKey, Workload, fact_key

UNKEPT_POISON = frozenset({"hl7-no-final-cr"})  # no complete message: nothing to keep
Key = tuple[str, str, str]  # (signal id, purpose, recipient)


@dataclass
class Figures:
    messages: int = 0
    facts_acknowledged: int = 0
    stream_facts: int = 0  # acknowledged facts sent during the stream (after the enrolments)
    poison_sent: int = 0
    stream_seconds: float = 0.0
    lost: list[str] = field(default_factory=list)
    poison_lost: list[str] = field(default_factory=list)  # acknowledged poison, not recorded
    never_acknowledged: list[str] = field(default_factory=list)
    valid_refused: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    records_tapped: int = 0
    positions_sampled: int = 0
    skipped: list[str] = field(default_factory=list)
    skipped_stored_later: list[str] = field(default_factory=list)
    poison: dict[str, Counter[str]] = field(default_factory=dict)
    poison_unanswered: list[str] = field(default_factory=list)
    poison_not_kept: list[str] = field(default_factory=list)
    episodes_expected: int = 0
    signals_missing: list[str] = field(default_factory=list)
    signals_doubled: list[str] = field(default_factory=list)
    signals_unexpected: list[str] = field(default_factory=list)
    signal_events: Counter[str] = field(default_factory=Counter)
    emails_expected: int = 0
    emails_received: int = 0
    emails_missing: list[str] = field(default_factory=list)
    emails_doubled: list[str] = field(default_factory=list)
    email_repeats: int = 0
    never_notified: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    late: list[str] = field(default_factory=list)
    budget_seconds: float = 60.0
    verify_ok: bool = False
    verify_output: str = ""
    ingest_unrecorded: int = 0

    @property
    def rate(self) -> float:
        return self.stream_facts / self.stream_seconds if self.stream_seconds else 0.0

    def failures(self) -> list[str]:
        """The targets this run missed, by name; empty when it passed."""
        counted = {
            "lost": self.lost + self.poison_lost,
            "duplicated": self.duplicated,
            "skipped": self.skipped + self.skipped_stored_later,
            "never acknowledged": self.never_acknowledged,
            "valid messages refused": self.valid_refused,
            "poison unanswered": self.poison_unanswered,
            "poison refused but not kept": self.poison_not_kept,
            "signals missing": self.signals_missing,
            "signals doubled": self.signals_doubled,
            "signals unexpected": self.signals_unexpected,
            "signals never notified": self.never_notified,
            "e-mails missing": self.emails_missing,
            "e-mails doubled": self.emails_doubled,
            "signals delivered late": self.late,
        }
        missed = [name for name, found in counted.items() if found]
        return missed if self.verify_ok else [*missed, "audit verify"]

    @property
    def passed(self) -> bool:
        return not self.failures()


def check(
    workload: Workload,
    ledger: Ledger,
    evidence: Evidence,
    observed: Observed,
    timeline: Timeline,
    *,
    budget_seconds: float = 60.0,
) -> Figures:
    figures = Figures(budget_seconds=budget_seconds)
    figures.messages = len(ledger.sent)
    figures.stream_seconds = max(ledger.finished_at - ledger.started_at, 0.0)
    figures.ingest_unrecorded = evidence.ingest_unrecorded
    if evidence.verify is not None:
        figures.verify_ok, figures.verify_output = evidence.verify.ok, evidence.verify.output
    _losses(figures, ledger, evidence)
    _poison(figures, ledger, evidence)
    figures.records_tapped = len(observed.records)
    figures.positions_sampled = len(observed.positions)
    figures.skipped, figures.skipped_stored_later = skipped_records(observed, evidence)
    _signals(figures, workload, evidence)
    received = _emails(figures, evidence)
    _latency(figures, workload, ledger, evidence, received, timeline)
    return figures


def _losses(figures: Figures, ledger: Ledger, evidence: Evidence) -> None:
    for sent in ledger.sent:
        if sent.item.poison is not None:
            continue
        label = f"{sent.item.message_id} ({sent.item.channel})"
        if sent.outcome == "refused":
            figures.valid_refused.append(f"{label}: {sent.detail}")
        elif not sent.acknowledged:
            figures.never_acknowledged.append(f"{label}: {sent.outcome} {sent.detail}")
            continue
        for fact in sent.item.facts:
            key = fact_key(fact)
            if sent.acknowledged:
                figures.facts_acknowledged += 1
                figures.stream_facts += sent.first_sent_at >= ledger.started_at
                if key not in evidence.facts:
                    figures.lost.append(f"{key[0]} {key[1]} ({label}, acknowledged {sent.detail})")
    figures.duplicated = [
        f"{kind} {key} x{len(times)}"
        for (kind, key), times in sorted(evidence.facts.items())
        if len(times) > 1
    ]


def _poison(figures: Figures, ledger: Ledger, evidence: Evidence) -> None:
    for sent in ledger.sent:
        kind = sent.item.poison
        if kind is None:
            continue
        figures.poison_sent += 1
        label = f"{kind} {sent.item.message_id}"
        kept = _sha(sent.kept) in evidence.rejected
        if sent.outcome == "refused":
            verdict = "refused and kept" if kept or kind in UNKEPT_POISON else "refused, not kept"
            if verdict == "refused, not kept":
                figures.poison_not_kept.append(f"{label}: {sent.detail}")
        elif sent.outcome == "acknowledged":
            keys = poison_fact_keys(sent.item)
            if any(key in evidence.facts for key in keys):
                verdict = "acknowledged and recorded"
            else:
                # ingest took it, something downstream refused what it made of it
                later = any(
                    k in text for k in {key for _, key in keys} for text in evidence.rejected_texts
                )
                verdict = (
                    "acknowledged, then dead-lettered"
                    if kept or later
                    else "acknowledged, then lost"
                )
                figures.poison_lost.append(f"{label}: {verdict} ({sent.detail})")
        else:
            verdict = f"{sent.outcome}: {sent.detail}"
            figures.poison_unanswered.append(f"{label}: {verdict}")
        figures.poison.setdefault(kind, Counter())[verdict] += 1


def _sha(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


def _signals(figures: Figures, workload: Workload, evidence: Evidence) -> None:
    figures.episodes_expected = len(workload.expected)
    figures.signal_events = Counter(s.kind for s in evidence.signals)
    raised: dict[tuple[str, str, str | None], int] = Counter(
        (s.subject, s.rule_id, s.episode_key) for s in evidence.signals if s.kind == "raised"
    )
    per_episode: Counter[Episode] = Counter()
    doubled: set[Episode] = set()
    for (subject, rule, episode_key), count in raised.items():
        per_episode[Episode(subject, rule)] += count
        if count > 1:
            doubled.add(Episode(subject, rule))
            label = f"{subject} {rule}" + (f" {episode_key}" if episode_key else "")
            figures.signals_doubled.append(f"{label} x{count}")
    for episode in sorted(workload.expected):
        found = per_episode[episode]
        if found == 0:
            figures.signals_missing.append(f"{episode.subject} {episode.rule_id}")
        elif found > 1 and episode not in doubled:  # raised under two episode keys
            figures.signals_doubled.append(f"{episode.subject} {episode.rule_id}: {found} episodes")
    figures.signals_unexpected = [
        f"{episode.subject} {episode.rule_id} x{count}"
        for episode, count in sorted(per_episode.items(), key=lambda i: str(i[0]))
        if episode not in workload.expected
    ]


def _expected_emails(evidence: Evidence) -> set[Key]:
    expected: set[Key] = set()
    resolutions: Counter[str] = Counter()
    for signal in evidence.signals:
        # keyed by the signal's id, which stays the same for its whole life
        recipients = evidence.recipients.get(signal.signal_id, frozenset())
        if signal.kind == "raised":
            expected |= {(signal.signal_id, "raised", r) for r in recipients}
        elif signal.kind == "resolved":
            resolutions[signal.signal_id] += 1
            purpose = f"resolved-{resolutions[signal.signal_id]}"
            # a resolution is told to those the first alert went to (no escalation here)
            expected |= {(signal.signal_id, purpose, r) for r in recipients}
    expected |= {
        (d.signal_id, d.purpose, d.recipient)
        for d in evidence.deliveries
        if d.channel == "email" and d.status != "cancelled"
    }
    return expected


def _emails(figures: Figures, evidence: Evidence) -> dict[Key, list[float]]:
    """Fills the e-mail figures; returns the arrival times per (signal, purpose, recipient)."""
    expected = _expected_emails(evidence)
    figures.emails_expected = len(expected)
    by_message_id = {
        d.message_id: (d.signal_id, d.purpose, d.recipient) for d in evidence.deliveries
    }
    arrivals: dict[Key, list[float]] = defaultdict(list)
    message_ids: dict[Key, set[str]] = defaultdict(set)
    copies: Counter[str] = Counter()
    for mail in evidence.mails:
        key = by_message_id.get(mail.message_id)
        if key is None:
            continue  # a digest, or mail from something else
        figures.emails_received += 1
        copies[mail.message_id] += 1
        arrivals[key].append(mail.received_at)
        message_ids[key].add(mail.message_id)
    figures.email_repeats = sum(count - 1 for count in copies.values())
    figures.emails_missing = [f"{s} {p} -> {r}" for s, p, r in sorted(expected - set(arrivals))]
    figures.emails_doubled = [
        f"{s} {p} -> {r}: {len(ids)} Message-IDs"
        for (s, p, r), ids in sorted(message_ids.items())
        if len(ids) > 1
    ]
    planned = {d.signal_id for d in evidence.deliveries}
    figures.never_notified = sorted(
        f"{s.subject} {s.rule_id} (signal {s.signal_id})"
        for s in evidence.signals
        if s.kind == "raised"
        and evidence.recipients.get(s.signal_id)
        and s.signal_id not in planned
    )
    return arrivals


def _latency(
    figures: Figures,
    workload: Workload,
    ledger: Ledger,
    evidence: Evidence,
    arrivals: dict[Key, list[float]],
    timeline: Timeline,
) -> None:
    acknowledged: dict[FactKey, Sent] = {
        fact_key(fact): sent
        for sent in ledger.sent
        if sent.acknowledged
        for fact in sent.item.facts
    }
    first_raised: dict[Episode, str] = {}
    for signal in evidence.signals:
        if signal.kind == "raised":
            first_raised.setdefault(Episode(signal.subject, signal.rule_id), signal.signal_id)
    ends = timeline.ends()
    for episode, trigger in sorted(workload.triggers.items(), key=lambda i: str(i[0])):
        sent, signal_id = acknowledged.get(trigger), first_raised.get(episode)
        if sent is None or sent.answered_at is None or signal_id is None:
            continue
        for recipient in sorted(evidence.recipients.get(signal_id, ())):
            times = arrivals.get((signal_id, "raised", recipient))
            if not times:
                continue
            arrived = min(times)
            start = max([sent.answered_at, *_ended_before(ends, arrived)])
            latency = arrived - start
            figures.latencies.append(latency)
            if latency > figures.budget_seconds:
                figures.late.append(
                    f"{episode.subject} {episode.rule_id} -> {recipient}: {latency:.0f}s"
                )


def _ended_before(ends: list[float], moment: float) -> Iterable[float]:
    index = bisect.bisect_right(ends, moment)
    return ends[index - 1 : index]
