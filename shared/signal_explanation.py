"""Why a signal fired, and what became of it, in words a medical monitor reads (pure).

Shared by `vigil rules explain` (the rules service) and the workspace's signal page (the
notifier), so both tell a signal the same way."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.events import SafetySignalRaised

# computed values the account below already tells in words
_TOLD = {"comparison", "reported_value", "reported_unit", "value_in_rule_unit", "rule_unit"}


@dataclass(frozen=True)
class InputFact:
    """One input of a signal as the audit log holds it."""

    event_id: str
    type: str
    position: int
    source: str
    recorded_at: datetime
    summary: str


@dataclass(frozen=True)
class LaterEvent:
    """Something that happened to the signal after it was raised."""

    position: int
    recorded_at: datetime
    summary: str


TimeFormat = Callable[[datetime], str]


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def why_it_fired(signal: SafetySignalRaised, when: TimeFormat = _iso) -> list[str]:
    """What was found and what the rule says, one sentence a line; ``when`` writes times."""
    computed = signal.computed_values
    lines = [*_finding(signal, when)]
    lines.append(f"The rule fires on {signal.threshold}: {computed.get('comparison', '')}.")
    if "censored" in computed:
        lines.append(
            f"The laboratory {computed['censored']}: every value it allows meets the condition."
        )
    return lines


def computed_values(signal: SafetySignalRaised) -> dict[str, Any]:
    """The computed values the sentences of :func:`why_it_fired` do not already tell."""
    return {k: v for k, v in signal.computed_values.items() if k not in _TOLD and k != "censored"}


def how_bad(signal: SafetySignalRaised, when: TimeFormat = _iso) -> list[str]:
    """The grade, seriousness and what must be done, one sentence a line."""
    lines = []
    if signal.grade is not None:
        lines.append(f"{signal.grading or 'Grade'}: grade {signal.grade}.")
    else:
        lines.append("Not graded.")
    if signal.serious:
        lines.append("A serious adverse event.")
    action = signal.required_action or "Review and acknowledge."
    if signal.reporting_deadline is not None:
        action += f" Due by {when(signal.reporting_deadline)}."
    lines.append(action)
    if not signal.subject_enrolled:
        lines.append(
            "The subject was not enrolled in Vigil when this was judged: rules needing age, "
            "sex, weight or Day 0 could not run, and the study's medical monitor is alerted."
        )
    return lines


def explain(
    signal: SafetySignalRaised,
    inputs: Sequence[InputFact],
    rule_source: str | None,
    later: Sequence[LaterEvent] = (),
) -> str:
    """A plain account: what was found, what the rule says, how bad, what must be done, the
    facts it rests on, and what happened to the signal since."""
    site = signal.site_id or "unknown: the subject is not enrolled in Vigil"
    lines = [
        f"Signal {signal.signal_id}",
        f"  Study {signal.study_id}, subject {signal.subject_id}, site {site}.",
        f"  Rule {signal.rule_id}: {signal.rule_title} (rule pack version "
        f"{signal.rule_pack_version}; {signal.severity}).",
        "",
        "Why it fired",
        *(f"  {line}" for line in why_it_fired(signal)),
    ]
    extra = computed_values(signal)
    if extra:
        lines += ["", "Computed values"]
        lines += [f"  {key}: {value}" for key, value in extra.items()]
    lines += ["", "How bad, and what to do", *(f"  {line}" for line in how_bad(signal))]
    lines += ["", "Inputs in the audit log"]
    lines += [
        f"  position {fact.position}: {fact.summary} (event {fact.event_id}, from "
        f"{fact.source}, recorded {fact.recorded_at.isoformat()})"
        for fact in inputs
    ]
    if later:
        lines += ["", "Since it was raised"]
        lines += [
            f"  position {event.position} ({event.recorded_at.isoformat()}): {event.summary}"
            for event in later
        ]
    source = rule_source or signal.rule_source
    if source:
        lines += ["", "Where the rule comes from", f"  {source}"]
    return "\n".join(lines)


def _finding(signal: SafetySignalRaised, when: TimeFormat) -> list[str]:
    computed = signal.computed_values
    moment = when(signal.collected_at)
    if "reported_value" in computed:
        reported = f"{computed['reported_value']} {computed.get('reported_unit') or ''}".strip()
        in_rule_unit = f"{computed.get('value_in_rule_unit')} {computed.get('rule_unit')}"
        converted = f", which is {in_rule_unit}" if reported.strip() != in_rule_unit.strip() else ""
        return [
            f"{signal.analyte[:1].upper()}{signal.analyte[1:]} was {reported} in the "
            f"specimen collected {moment}{converted}."
        ]
    return [f"{signal.analyte} (clinical time {moment})."]


def input_summary(
    event_type: str, payload: dict[str, object], when: Callable[[str], str] = str
) -> str:
    """One input fact of a signal in words (ids, analyte, value; no free text); ``when``
    writes a time of the payload (as stored: ISO 8601 text). A time known only to the day
    (or coarser) is written as stored: moved to another zone it could change its day."""
    if "ae_id" in payload:
        serious = "serious" if payload.get("serious") else "not serious"
        return f"adverse event {payload['ae_id']} '{payload.get('term')}' ({serious})"
    if "medication_id" in payload:
        return (
            f"medication {payload.get('drug')} {payload.get('dose')} {payload.get('dose_unit')} "
            f"{payload.get('frequency') or ''} {payload.get('route')}, from "
            f"{_written(payload.get('start'), when)}"
        )
    if "site_id" in payload and "birth_date" in payload:
        return f"enrolment at site {payload['site_id']} (weight {payload.get('weight_kg')} kg)"
    if "problem" in payload and "segment" in payload:
        code = payload.get("loinc_code") or payload.get("local_code")
        return (
            f"unreadable lab result {code} at {payload['segment']} {payload.get('field')}: "
            f"{payload['problem']}"
        )
    if "loinc_code" in payload:
        value = (
            payload.get("value") if payload.get("value") is not None else payload.get("value_text")
        )
        return (
            f"lab result {payload.get('loinc_code')} = {value} {payload.get('unit') or ''}".strip()
            + f", status {payload.get('result_status')}, collected "
            + (
                f"{payload.get('collected_at')} (dated to the {precision} only)"
                if (precision := payload.get("collected_precision")) in _COARSE
                else _written(payload.get("collected_at"), when)
                + (f" (dated to the {precision} only)" if precision else "")
            )
        )
    return event_type


_COARSE = ("year", "month", "day")


def _written(raw: object, when: Callable[[str], str]) -> str:
    return "None" if raw is None else when(str(raw))


def later_summary(event_type: str, payload: dict[str, object]) -> str:
    """One later event of a signal (escalated, amended, resolved...) in words."""
    what = event_type.removeprefix("org.vigil.safety_signal.").removesuffix(".v1")
    if what == "escalated":
        return f"escalated from grade {payload.get('previous_grade')} to {payload.get('grade')}"
    if what == "amended":
        return (
            f"amended (grade {payload.get('previous_grade')} -> {payload.get('grade')}): "
            f"{payload.get('reason')}"
        )
    return f"{what}: {payload.get('reason', '')}".rstrip(": ")
