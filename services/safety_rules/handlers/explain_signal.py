"""``vigil rules explain``: a signal and its inputs, read back from the audit log."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping

from services.safety_rules.domain.rule_pack import RulePack
from shared.events import SafetySignalRaised
from shared.eventstore import EventStore
from shared.signal_explanation import (
    InputFact,
    LaterEvent,
    explain,
    input_summary,
    later_summary,
)


class SignalNotFound(LookupError):
    """No safety signal with that id in the audit log."""


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
            input_summary(e.type, e.payload),
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
    later = [
        LaterEvent(e.position, e.recorded_at, later_summary(e.type, e.payload)) for e in history
    ]
    return explain(signal, inputs, source, later)
