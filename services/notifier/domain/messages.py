"""What an alert says. Subject id, analyte, value, threshold, rule and a link; no names."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from shared.events import SafetySignalRaised
from shared.events.payloads import EVENT_ID_NAMESPACE


@dataclass(frozen=True)
class Delivery:
    """One message to one person on one channel for one signal."""

    delivery_id: uuid.UUID
    signal_id: uuid.UUID
    channel: str
    recipient: str
    message_id: str
    subject_line: str
    body_text: str


def delivery_id_for(signal_id: uuid.UUID, channel: str, recipient: str) -> uuid.UUID:
    """Stable per signal, channel and recipient: a repeat is recognisable as the same."""
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"delivery:{signal_id}:{channel}:{recipient.lower()}")


def render_email(signal: SafetySignalRaised, *, recipient: str, base_url: str) -> Delivery:
    """The e-mail for one recipient."""
    delivery_id = delivery_id_for(signal.signal_id, "email", recipient)
    value = (
        f"{signal.observed_value:f} {signal.observed_unit or ''}".strip()
        if signal.observed_value is not None
        else signal.threshold
    )
    subject_line = (
        f"[Vigil] {signal.study_id} subject {signal.subject_id}: "
        f"{signal.analyte} {value} ({signal.rule_id})"
    )
    computed = "\n".join(f"  {key}: {val}" for key, val in sorted(signal.computed_values.items()))
    site = signal.site_id or "unknown (subject not enrolled in Vigil)"
    deadline = (
        f"{signal.required_action or 'report'} by {signal.reporting_deadline.isoformat()}"
        if signal.reporting_deadline
        else (signal.required_action or "review and acknowledge")
    )
    body = f"""A safety signal was raised for a subject in study {signal.study_id}.

Subject:      {signal.subject_id}
Site:         {site}
Analyte:      {signal.analyte}
Value:        {value}
Threshold:    {signal.threshold}
Rule:         {signal.rule_id} - {signal.rule_title}
Rule pack:    version {signal.rule_pack_version}
Collected at: {signal.collected_at.isoformat()}
Grade:        {signal.grading or "CTCAE"} grade {signal.grade or "not graded"}
Deadline:     {deadline}

Computed values:
{computed}

Signal: {signal.signal_id}
Review and acknowledge: {base_url.rstrip("/")}/signals/{signal.signal_id}

This message was sent by Vigil safety monitoring. It contains no direct identifiers.
"""
    return Delivery(
        delivery_id=delivery_id,
        signal_id=signal.signal_id,
        channel="email",
        recipient=recipient,
        message_id=f"<{delivery_id}@vigil>",
        subject_line=subject_line,
        body_text=body,
    )
