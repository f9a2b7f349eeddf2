"""A subject's audit trail as people read it (pure): each event's type in words, who or
what recorded it, and a short summary of ids, analytes and values.

Only fields that hold ids, codes, numbers and Vigil's own vocabulary are summarised: never
free text a person or a sender typed (an adverse event's verbatim term, a comment, a
note, a drug's name as sent), which could hold an identifier. The full record, with
hashes, is the export.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

#: the people's own events: their ``person_id`` is who recorded them
PEOPLES_EVENTS = frozenset(
    {
        "org.vigil.notification.acknowledged.v1",
        "org.vigil.notification.assessment_signed.v1",
        "org.vigil.data_quality.issue_reviewed.v1",
        "org.vigil.notification.issue_acknowledged.v1",
    }
)

_WORDS: Mapping[str, str] = {
    "org.vigil.subject.enrolled.v1": "Subject enrolled",
    "org.vigil.lab_result.reported.v1": "Lab result reported",
    "org.vigil.lab_result.unreadable.v1": "Lab result unreadable",
    "org.vigil.lab_result.superseded.v1": "Lab result superseded",
    "org.vigil.adverse_event.reported.v1": "Adverse event reported",
    "org.vigil.medication.recorded.v1": "Medication recorded",
    "org.vigil.data_quality.issue_raised.v1": "Data-quality issue raised",
    "org.vigil.data_quality.issue_reviewed.v1": "Data-quality issue reviewed",
    "org.vigil.safety_signal.raised.v1": "Safety signal raised",
    "org.vigil.safety_signal.escalated.v1": "Safety signal worsened",
    "org.vigil.safety_signal.resolved.v1": "Safety signal resolved",
    "org.vigil.safety_signal.reopened.v1": "Safety signal reopened",
    "org.vigil.safety_signal.amended.v1": "Safety signal amended",
    "org.vigil.safety_signal.retracted.v1": "Safety signal retracted",
    "org.vigil.safety_signal.routed.v1": "Safety signal routed to a site",
    "org.vigil.notification.opened.v1": "Notification opened",
    "org.vigil.notification.reissued.v1": "Notification reissued",
    "org.vigil.notification.escalated.v1": "Notification escalated",
    "org.vigil.notification.withdrawn.v1": "Notification withdrawn",
    "org.vigil.notification.resolved.v1": "Notification resolved",
    "org.vigil.notification.reopened.v1": "Notification reopened",
    "org.vigil.notification.routed.v1": "Notification routed",
    "org.vigil.notification.acknowledged.v1": "Acknowledged (link)",
    "org.vigil.notification.assessment_signed.v1": "Assessment signed",
    "org.vigil.notification.issue_acknowledged.v1": "Data-quality issue acknowledged",
    "org.vigil.notification.delivery_attempted.v1": "Delivery attempted",
    "org.vigil.notification.delivery_succeeded.v1": "Delivery succeeded",
    "org.vigil.notification.delivery_failed.v1": "Delivery failed",
    "org.vigil.notification.delivery_fell_back.v1": "Delivery fell back",
}


def type_in_words(event_type: str) -> str:
    """``Lab result reported``; an unknown type from its name (``org.vigil.x.y.v1``: x y)."""
    if event_type in _WORDS:
        return _WORDS[event_type]
    parts = event_type.split(".")
    name = " ".join(parts[2:-1]) if len(parts) > 3 else event_type
    return name.replace("_", " ").capitalize()


def recorded_by(event_type: str, source: str, payload: Mapping[str, Any]) -> str:
    """The envelope's source, and for a person's own event, the person id."""
    person = payload.get("person_id")
    if event_type in PEOPLES_EVENTS and isinstance(person, str):
        role = payload.get("role")
        return f"{source}: {person}" + (f" ({role})" if isinstance(role, str) else "")
    return source


def _value(payload: Mapping[str, Any], value: str, unit: str, comparator: str = "") -> str:
    shown = payload.get(value)
    if shown is None:
        return ""
    return f"{payload.get(comparator) or ''}{shown} {payload.get(unit) or ''}".strip()


def _pairs(*items: tuple[str, object]) -> str:
    return "; ".join(f"{k} {v}" for k, v in items if v not in (None, "", (), []))


def _lab(p: Mapping[str, Any]) -> str:
    code = (p.get("loinc_code") and f"LOINC {p['loinc_code']}") or p.get("local_code")
    return _pairs(
        ("analyte", code),
        ("value", _value(p, "value", "unit", "comparator") or p.get("qualitative")),
        ("canonical", _value(p, "canonical_value", "canonical_unit")),
        ("status", p.get("result_status")),
        ("message", p.get("source_message_id")),
    )


def _signal(p: Mapping[str, Any]) -> str:
    return _pairs(
        ("rule", p.get("rule_id")),
        ("signal", p.get("signal_id")),
        ("grade", p.get("grade")),
        ("value", _value(p, "observed_value", "observed_unit", "observed_comparator")),
        ("site", p.get("site_id")),
    )


def _recipients(p: Mapping[str, Any]) -> str:
    roles = sorted({r.get("role", "") for r in p.get("recipients", ()) if isinstance(r, dict)})
    return ", ".join(roles)


_SUMMARIES: Mapping[str, Callable[[Mapping[str, Any]], str]] = {
    "org.vigil.subject.enrolled.v1": lambda p: _pairs(("site", p.get("site_id"))),
    "org.vigil.lab_result.reported.v1": _lab,
    "org.vigil.lab_result.unreadable.v1": lambda p: _pairs(
        ("analyte", p.get("loinc_code") and f"LOINC {p['loinc_code']}"),
        ("field", p.get("field")),
        ("segment", p.get("segment")),
        ("message", p.get("source_message_id")),
    ),
    "org.vigil.lab_result.superseded.v1": lambda p: _pairs(
        ("reason", p.get("reason")),
        ("superseded", p.get("superseded_event_id")),
        ("by", p.get("superseding_event_id")),
    ),
    "org.vigil.adverse_event.reported.v1": lambda p: _pairs(
        ("AE", p.get("ae_id")),
        ("MedDRA", p.get("meddra_code")),
        ("serious", "yes" if p.get("serious") else "no"),
        ("CTCAE grade", p.get("ctcae_grade")),
        ("message", p.get("source_message_id")),
    ),
    "org.vigil.medication.recorded.v1": lambda p: _pairs(
        ("medication", p.get("medication_id")),
        ("code", p.get("drug_code")),
        ("dose", _value(p, "dose", "dose_unit")),
        ("message", p.get("source_message_id")),
    ),
    "org.vigil.data_quality.issue_raised.v1": lambda p: _pairs(
        ("issue", p.get("issue")),
        ("rule", p.get("rule_id")),
        ("about event", p.get("related_event_id")),
    ),
    "org.vigil.data_quality.issue_reviewed.v1": lambda p: _pairs(("issue", p.get("issue_id"))),
    "org.vigil.notification.opened.v1": lambda p: _pairs(
        ("signal", p.get("signal_id")), ("told", _recipients(p))
    ),
    "org.vigil.notification.escalated.v1": lambda p: _pairs(
        ("signal", p.get("signal_id")), ("level", p.get("level")), ("told", _recipients(p))
    ),
    "org.vigil.notification.acknowledged.v1": lambda p: _pairs(
        ("signal", p.get("signal_id")), ("assessment", p.get("assessment"))
    ),
    "org.vigil.notification.issue_acknowledged.v1": lambda p: _pairs(
        ("issue", p.get("signal_id")), ("review", p.get("review_event_id"))
    ),
    "org.vigil.notification.assessment_signed.v1": lambda p: _pairs(
        ("signal", p.get("signal_id")),
        ("meaning", p.get("meaning")),
        ("bound to", p.get("facts_digest")),
    ),
}


def summary(event_type: str, payload: Mapping[str, Any]) -> str:
    """Ids, analytes and values of an event; no free text."""
    if event_type.startswith("org.vigil.safety_signal."):
        return _signal(payload)
    found = _SUMMARIES.get(event_type)
    if found is not None:
        return found(payload)
    if event_type.startswith("org.vigil.notification.delivery_"):
        return _pairs(
            ("signal", payload.get("signal_id")),
            ("to", payload.get("person_id")),
            ("channel", payload.get("channel")),
            ("purpose", payload.get("purpose")),
        )
    return _pairs(("signal", payload.get("signal_id")))
