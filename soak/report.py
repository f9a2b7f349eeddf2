"""The soak's report: the stream, the fault timeline, every figure against its target, and
the first examples of whatever missed its target."""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path

from soak.checker import Figures
from soak.config import SoakConfig
from soak.faults import Timeline

EXAMPLES = 10


def _row(name: str, found: int, target: str = "0") -> str:
    mark = "ok " if target != "0" or found == 0 else "MISS"
    return f"  {mark:4} {name:<58} {found:>8}   (target {target})"


def _seconds(values: list[float]) -> str:
    if not values:
        return "none measured"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"median {statistics.median(ordered):.1f} s, p95 {p95:.1f} s, max {ordered[-1]:.1f} s "
        f"over {len(ordered)} e-mails"
    )


def timeline_lines(timeline: Timeline, origin: float) -> list[str]:
    kinds = Counter(f.kind for f in timeline.faults)
    lines = [
        f"Faults: {len(timeline.faults)} ("
        + ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
        + ")"
    ]
    for fault in timeline.faults:
        took = f"{fault.seconds:6.1f} s" if fault.seconds is not None else "   (unfinished)"
        note = f"  {fault.note}" if fault.note else ""
        lines.append(f"  +{fault.started_at - origin:7.1f} s  {fault.kind:<28} {took}{note}")
    return lines


def render(
    figures: Figures,
    config: SoakConfig,
    timeline: Timeline,
    *,
    origin: float,
    elapsed: float,
    folder: Path,
) -> str:
    """The whole report as text."""
    f = figures
    lines = [
        f"Vigil soak, seed {config.seed}: {config.events:,} events planned at "
        f"{config.rate:g}/s, poison every {config.poison_every} messages",
        f"Stream: {f.messages:,} messages ({f.poison_sent} poison), {f.facts_acknowledged:,} "
        f"facts acknowledged; {f.rate:.1f} facts/s over {f.stream_seconds:.0f} s of stream; "
        f"whole run {elapsed / 60:.1f} min",
        "",
        *timeline_lines(timeline, origin),
        "",
        "Figures:",
        _row("lost (acknowledged, not in the audit log)", len(f.lost)),
        _row("poison acknowledged, then dead-lettered or lost", len(f.poison_lost)),
        _row("duplicated (one fact recorded twice)", len(f.duplicated)),
        _row("skipped (below a recorded position, not yet recorded)", len(f.skipped)),
        _row("skipped, recorded later (brought back by the re-drive)", len(f.skipped_stored_later)),
        f"         ({f.positions_sampled} consumer positions sampled, {f.records_tapped:,} "
        "records read from the topics)",
        _row("never acknowledged (sender gave up)", len(f.never_acknowledged)),
        _row("valid messages refused", len(f.valid_refused)),
        _row("poison that got no answer", len(f.poison_unanswered)),
        _row("poison refused but not kept as rejected input", len(f.poison_not_kept)),
        _row("expected episodes", f.episodes_expected, "-"),
        _row("signals missing (an expected episode without one)", len(f.signals_missing)),
        _row("signals doubled (an episode raised twice)", len(f.signals_doubled)),
        _row("signals unexpected (where no finding was sent)", len(f.signals_unexpected)),
        "         signal events: "
        + (", ".join(f"{n} {kind}" for kind, n in sorted(f.signal_events.items())) or "none"),
        _row("e-mails expected (signal, purpose, recipient)", f.emails_expected, "-"),
        _row("e-mails received", f.emails_received, "-"),
        _row("signals never notified (no message planned)", len(f.never_notified)),
        _row("e-mails missing", len(f.emails_missing)),
        _row("e-mails doubled (two Message-IDs for one message)", len(f.emails_doubled)),
        _row("repeats of one Message-ID (receivers drop them)", f.email_repeats, "-"),
        _row(f"signals delivered later than {f.budget_seconds:.0f} s after recovery", len(f.late)),
        f"         delivery after max(acknowledged, last fault end): {_seconds(f.latencies)}",
        _row("events ingest still owes the audit log at the end", f.ingest_unrecorded, "-"),
        f"  {'ok ' if f.verify_ok else 'MISS':4} audit verify: "
        + (f.verify_output.splitlines() or ["(no output)"])[0][:200],
        "",
        "Poison, by kind:",
        *(
            f"  {kind:<24} " + ", ".join(f"{n} {verdict}" for verdict, n in sorted(c.items()))
            for kind, c in sorted(f.poison.items())
        ),
    ]
    examples = {
        "lost": f.lost,
        "poison acknowledged": f.poison_lost,
        "duplicated": f.duplicated,
        "skipped": f.skipped,
        "skipped, recorded later": f.skipped_stored_later,
        "never acknowledged": f.never_acknowledged,
        "valid messages refused": f.valid_refused,
        "poison unanswered": f.poison_unanswered,
        "poison not kept": f.poison_not_kept,
        "signals missing": f.signals_missing,
        "signals doubled": f.signals_doubled,
        "signals unexpected": f.signals_unexpected,
        "never notified": f.never_notified,
        "e-mails missing": f.emails_missing,
        "e-mails doubled": f.emails_doubled,
        "late": f.late,
    }
    shown = [(name, items) for name, items in examples.items() if items]
    if shown:
        lines += ["", f"Examples (first {EXAMPLES} of each):"]
        for name, items in shown:
            lines.append(f"  {name} ({len(items)}):")
            lines += [f"    {item}" for item in items[:EXAMPLES]]
    if not f.verify_ok and f.verify_output:
        lines += ["", "audit verify said:", *("  " + s for s in f.verify_output.splitlines()[:20])]
    failures = f.failures()
    lines += [
        "",
        f"Logs and data: {folder}",
        "Result: PASS" if not failures else "Result: FAIL (" + ", ".join(failures) + ")",
    ]
    return "\n".join(lines)
