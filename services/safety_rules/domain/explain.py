"""Why a signal fired, in words a medical monitor reads (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from shared.events import SafetySignalRaised


@dataclass(frozen=True)
class InputFact:
    """One input of a signal as the audit log holds it."""

    event_id: str
    type: str
    position: int
    source: str
    recorded_at: datetime
    summary: str


def explain(
    signal: SafetySignalRaised, inputs: Sequence[InputFact], rule_source: str | None
) -> str:
    """A plain account: what was measured, what the rule says, and where it came from."""
    computed = signal.computed_values
    value = computed.get("reported_value", signal.observed_value)
    reported = f"{value} {computed.get('reported_unit', signal.observed_unit)}"
    in_rule_unit = f"{computed.get('value_in_rule_unit')} {computed.get('rule_unit')}"
    site = signal.site_id or "unknown: the subject is not enrolled in Vigil"
    lines = [
        f"Signal {signal.signal_id}",
        f"  Study {signal.study_id}, subject {signal.subject_id}, site {site}.",
        f"  Rule {signal.rule_id}: {signal.rule_title} (rule pack version "
        f"{signal.rule_pack_version}).",
        "",
        "Why it fired",
        f"  {signal.analyte.capitalize()} was {reported} in the specimen collected "
        f"{signal.collected_at.isoformat()}"
        + (f", which is {in_rule_unit}." if reported.strip() != in_rule_unit.strip() else "."),
        f"  The rule fires when {signal.analyte} is {signal.threshold}: "
        f"{computed.get('comparison', '')}.",
    ]
    if "censored" in computed:
        lines.append(
            f"  The laboratory {computed['censored']}: the true value may meet the condition, "
            "so the rule alerts rather than stay silent."
        )
    lines += ["", "Inputs in the audit log"]
    lines += [
        f"  position {fact.position}: {fact.summary} (event {fact.event_id}, from "
        f"{fact.source}, recorded {fact.recorded_at.isoformat()})"
        for fact in inputs
    ]
    if rule_source:
        lines += ["", "Where the rule comes from", f"  {rule_source}"]
    return "\n".join(lines)
