"""``vigil rules explain``: a signal and its inputs, read back from the audit log."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping

from services.safety_rules.domain.explain import InputFact, LaterEvent, explain
from services.safety_rules.domain.rule_pack import RulePack
from shared.events import SafetySignalRaised
from shared.eventstore import EventStore


class SignalNotFound(LookupError):
    """No safety signal with that id in the audit log."""


def _summary(event_type: str, payload: dict[str, object]) -> str:
    if "ae_id" in payload:
        serious = "serious" if payload.get("serious") else "not serious"
        return f"adverse event {payload['ae_id']} '{payload.get('term')}' ({serious})"
    if "medication_id" in payload:
        return (
            f"medication {payload.get('drug')} {payload.get('dose')} {payload.get('dose_unit')} "
            f"{payload.get('frequency') or ''} {payload.get('route')}, from {payload.get('start')}"
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
            + f", status {payload.get('result_status')}, collected {payload.get('collected_at')}"
            + (
                f" (dated to the {precision} only)"
                if (precision := payload.get("collected_precision"))
                else ""
            )
        )
    return event_type


async def explain_stored_signal(
    store: EventStore,
    signal_id: uuid.UUID,
    current_packs: Callable[[], Mapping[str, RulePack]],
) -> str:
    """The explanation of one signal of ``store``; ``current_packs`` (the study packs as
    they are now, by study id) is called only for a signal raised before signals carried
    their rule's source."""
    found = await store.find_event(signal_id, SafetySignalRaised.event_type)
    if found is None:
        raise SignalNotFound(f"no safety signal {signal_id} in the audit log")
    signal = SafetySignalRaised.model_validate_json(found.payload_text)
    stored_inputs = await store.read_events(signal.input_event_ids)
    history = await store.read_signal_history(signal.stream_id, signal_id)
    inputs = [
        InputFact(
            str(e.event_id),
            e.type,
            e.position,
            e.source,
            e.recorded_at,
            _summary(e.type, e.payload),
        )
        for e in stored_inputs
    ]
    source = signal.rule_source  # the source as it stood when the signal was raised
    if source is None:
        # raised before signals carried their rule's source: the current pack's, so marked
        pack = current_packs().get(signal.study_id)
        rule = next((r for r in pack.rules if r.id == signal.rule_id), None) if pack else None
        if rule is not None and pack is not None:
            source = rule.source
            if pack.version != signal.rule_pack_version:
                source = (
                    f"(the current pack is version {pack.version}; the signal was raised "
                    f"under {signal.rule_pack_version}) {source}"
                )
    later = [LaterEvent(e.position, e.recorded_at, _later(e.type, e.payload)) for e in history]
    return explain(signal, inputs, source, later)


def _later(event_type: str, payload: dict[str, object]) -> str:
    what = event_type.removeprefix("org.vigil.safety_signal.").removesuffix(".v1")
    if what == "escalated":
        return f"escalated from grade {payload.get('previous_grade')} to {payload.get('grade')}"
    if what == "amended":
        return (
            f"amended (grade {payload.get('previous_grade')} -> {payload.get('grade')}): "
            f"{payload.get('reason')}"
        )
    return f"{what}: {payload.get('reason', '')}".rstrip(": ")
